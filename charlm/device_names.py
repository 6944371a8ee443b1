"""The names `--device` takes and its defaults. device.py turns them into torch objects; kept apart from
it so that a config is checked, and the command line builds its options, help and Tab completion,
without importing torch (seconds, at every Tab press)."""

import re

from .halfwidth import half_width

DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N, which a user types whole
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# --device's default by the kind of work, one rule for every command and function: over whole texts at
# once (training, eval), the best device present; one character a step (sampling, serving, inspect),
# the CPU, fastest there for charlm's model sizes (docs/scaling.md).
WHOLE_TEXTS_DEVICE = "auto"
STEP_DEVICE = "cpu"


def device_name(given: object) -> str:
    """A --device as DEVICE_PATTERN reads it: `ＣＵＤＡ：０ ` is cuda:0 (halfwidth.py's rule)."""
    return half_width(str(given)).strip().lower()
