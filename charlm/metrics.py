"""The run's record: `metrics.jsonl` (one JSON object a line, append-only) and `run.json` (what the
run is: corpus and config), both in the run folder. `charlm plot` and `charlm runs` read them.

A resumed run appends `{"resume": STEP}` and goes on from its checkpoint's step; rows an earlier
process wrote past that step (after its last checkpoint, before it was killed) are dropped on read.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

METRICS, RUN_INFO = "metrics.jsonl", "run.json"


class MetricsLog:
    """Best effort: a metrics line that cannot be written (disk full) is a warning, not the end of the
    run; checkpoints decide that."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS
        self.warned = False

    def append(self, row: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            if not self.warned:
                print(f"warning: {self.path}: cannot write metrics ({e.strerror}); training goes on", file=sys.stderr)
                self.warned = True


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run in step order, with the rows a resume superseded left out."""
    path = Path(run_dir) / METRICS
    rows: list[dict] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if "resume" in row:
            rows = [r for r in rows if r["step"] <= row["resume"]]
        elif isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def write_run_info(run_dir: Path, info: dict) -> None:
    path = Path(run_dir) / RUN_INFO
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**info, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"warning: {path}: cannot write ({e.strerror}); training goes on", file=sys.stderr)


def read_run_info(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
