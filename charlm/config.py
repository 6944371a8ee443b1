"""One source of defaults: the `Config` dataclass. The CLI and the Python API both build it.

Each field's metadata carries its help text (`fields.option`), so `charlm train --help` is generated
from here and a default is never written twice. What every field is checked for (its annotated type,
its choices) is fields.py's; the ranges here are each option's own. A checkpoint stores the config as
a plain dict (JSON types only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass

from .corpus import NORMALIZATIONS, text_decoder
from .device_names import DEVICE_FORMS, DEVICE_PATTERN, WHOLE_TEXTS_DEVICE, device_name
from .errors import CharLMError, one_line_path
from .fields import (
    SHOWN,
    check_choices,
    check_types,
    flags_said,
    keywords_named,
    option,
    said,
    store_as_read,
    unreadable_value,
)
from .forms import FORM_CHOICES, template_of
from .halfwidth import DURATION_UNITS, as_number, half_width, retype_hint

CELLS = ("lstm", "gru", "rnn")
HEADS = ("auto", "full", "adaptive")

SAVE_ERRORS = ("stop", "warn")
TOKENIZERS = ("char", "sentencepiece")
SPM_MODELS = ("char", "bpe", "unigram")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAMPLE_PRECISIONS = ("fp32", "bf16")

# A run's limits, each counting the whole run (a resumed run's earlier sessions too).
LIMITS = ("max_steps", "max_time")

# Options a resumed run may change: limits, cadence, reporting, the optimizer's step size (to
# recover from a diverged run), and where and in which precision it runs (a GPU run may go on on a
# CPU). Everything else shapes the model or the data and must stay.
RESUMABLE = (
    "max_steps", "max_time", "eval_every", "patience", "checkpoint_every", "save_errors", "detect_anomaly", "quiet",
    "sample_every", "tensorboard", "lr", "grad_clip", "device", "precision", "threads", "eval_also",
)  # fmt: skip

# Options a resume may change that its record in run.json leaves out: how much the run says, not how it trains.
UNRECORDED = ("quiet",)

# The options a run's plan never leaves unset (plan.py fits those not given; run.json keeps why).
PLANNED = ("batch_size", "hidden", "dropout", "eval_every")

# Options of how a run was launched and watched, not of what it learned: `charlm info` leaves them out.
LAUNCH_OPTIONS = (
    "checkpoint_every", "save_errors", "detect_anomaly", "sample_every", "tensorboard", "quiet", "device", "threads",
    "precision",
)  # fmt: skip

# Options that decide the token ids: they key the prepared-corpus cache.
CORPUS_OPTIONS = ("encoding", "normalize", "min_count", "coverage", "tokenizer", "spm_model", "vocab_size")

# A 64-bit signed integer's range: any whole number charlm reads (a count, a seed, a checkpoint's step)
# is within it, so that none meets a float or torch as an OverflowError (400 digits of --max-steps).
INT64 = (-(2**63), 2**63 - 1)
# torch takes a seed as a 64-bit integer (a negative one wraps around: -1 is 2**64 - 1). charlm adds
# small offsets to it (sample i: seed + i; rank r: seed + r), so it keeps seeds to the signed range:
# every torch seed is one of them, and seed + offset is still one torch takes.
SEED_RANGE = INT64

# Upper bounds that keep a typo (--hidden 40000000) from becoming an out-of-memory crash.
MAXIMA = {"layers": 64, "hidden": 16384, "seq_len": 100_000, "batch_size": 65_536}
VOCAB_SIZE_RANGE = (8, 2**31 - 1)  # sentencepiece keeps --vocab-size as a 32-bit signed integer
MAX_THREADS = 1024
MAX_LENGTH = 10_000_000  # characters one sample may ask for: --length 99999999999999999999 is a typo
MAX_SAMPLES = 4096  # samples drawn side by side, each a row of the batch: more is a typo that exhausts memory
TEMPERATURE = 0.8  # a sample's when none is given: safer than the model's own 1.0, not yet repetitive
STOP_EXAMPLE = "\n\n"  # the stop a message suggests: a blank line, where a paragraph or a poem ends
# recent characters the penalty counts, a row's history of 8 bytes each (times --num-samples): a chapter's worth;
# --repetition-window 10000000000 would ask for 80 GB, a typo that ends in torch's allocation error
MAX_REPETITION_WINDOW = 100_000
MAX_REPETITION_PENALTY = 100.0  # above it every recent character is as good as banned; far above, float32 overflows
MAX_LOGIT_BIAS = 100.0  # OpenAI's range for logit_bias: -100 bans a token, +100 in effect selects it
MAX_COUNT_PENALTY = 2.0  # OpenAI's range for presence_penalty and frequency_penalty: -2 to 2
COUNT_PENALTIES = ("presence_penalty", "frequency_penalty")  # OpenAI's, of how often a sample wrote a token
# under torchrun (distributed.py), set apart from the dataclasses: not a run's option, the launch's
PEER_TIMEOUT = 300.0  # --peer-timeout's seconds: far above a step, an evaluation or a checkpoint of a large model
MAX_PEER_TIMEOUT = 7 * 24 * 3600.0  # a week; far more failed as a traceback (timedelta past 8.6e13 s, gloo at 8.6e13)


@keywords_named
@dataclass
class Config:
    """A training run's options: what `charlm train` and `charlm.train` take, and what a checkpoint
    keeps. Those left None of hidden, dropout, batch_size and eval_every are fitted by the run's plan.

    Raises CharLMError, naming the field, for an unknown field or a value of the wrong type or out of
    range.

    The plan fits the fields of `PLANNED`. `charlm train --help` lists the fields in this order: the
    options every run needs first.
    """

    # how long: the run stops at whichever comes first; the schedule decays over that budget
    max_time: str | float | None = option(
        "10m",
        "stop after this much training time, e.g. 90s, 10m, 1h (a bare number: seconds), counting a resumed "
        "run's earlier sessions (none: no time limit; then give --max-steps)",
        half_width=True,
    )
    max_steps: int | None = option(None, "stop after this many optimizer steps (a resumed run's included)")
    patience: int = option(
        5,
        "stop early once validation bpc has not improved for N evaluations in a row (the text is being "
        "memorized; best.pt keeps the best); 0: never",
    )
    # model size
    hidden: int | None = option(
        None, "hidden units per layer (also the embedding size); unset: fitted to --max-time and --max-steps"
    )
    layers: int = option(2, "stacked recurrent layers")
    cell: str = option("lstm", "recurrent cell", choices=CELLS)
    dropout: float | None = option(
        None,
        "dropout between layers and before the head; unset: fitted to how many times the run will read "
        "the training text (0.1 up to 12 times, rising to 0.5 at 40)",
    )
    head: str = option(
        "auto",
        "output layer: full (a row per character), adaptive (an adaptive softmax; its rarest cluster needs "
        "--hidden 16 or more), auto: adaptive for big vocabularies where the hidden size allows it",
        choices=HEADS,
    )
    # what the run says and saves
    quiet: bool = option(
        False,
        "no progress bars (preparing the corpus: counting, training tokenizer, encoding; training), no choices "
        "said, no closing sample: only the done: line (and --sample-every's samples, and warnings about the "
        "options given)",
        python_help="no progress bars, no choices said, no samples, no done: line: nothing printed (warnings about "
        "the options given stay Python warnings)",
    )
    eval_every: int | None = option(
        None,
        "evaluate validation bpc and checkpoint every N steps; unset: once per pass over the training text, "
        "at most every 2000 steps",
    )
    sample_every: int = option(0, "print a short sample (and add it to samples.txt) every N-th evaluation; 0: never")
    checkpoint_every: str | int = option(
        "3m", "also save latest.pt every N steps (a number) or DURATION (e.g. 5m)", half_width=True
    )
    save_errors: str = option(
        "stop", "when a checkpoint cannot be written: stop, or warn and train on", choices=SAVE_ERRORS
    )
    tensorboard: bool = option(False, "also log metrics for TensorBoard (needs the tensorboard package)")
    eval_also: str | None = option(
        None,
        "also score this text (its first 50,000 tokens) at each evaluation: a FILE, or a RUN's held-out text "
        "(what `charlm eval RUN` scores), e.g. the base's: what fine-tuning forgets",
        metavar="FILE|RUN",
    )
    # hardware
    device: str = option(
        WHOLE_TEXTS_DEVICE, f"{DEVICE_FORMS}; auto: the best present (cuda, mps, cpu)", half_width=True
    )
    precision: str = option(
        "auto",
        "forward-pass precision; auto: bf16 on CUDA (older GPUs: fp16) and on CPUs with bf16 hardware, else fp32",
        choices=PRECISIONS,
    )
    threads: int | None = option(None, "CPU threads; unset: adapt to the CPU the run gets, measured as it trains")
    # data and vocabulary
    seq_len: int = option(
        25, "window length in tokens: characters, or a sentencepiece model's pieces (truncated BPTT length)"
    )
    batch_size: int | None = option(
        None,
        "contiguous streams trained side by side; unset: 16, but on a CUDA GPU with --max-time as many as "
        "still raise the measured speed",
    )
    val_fraction: float = option(0.1, "fraction of the text held out at its end for validation")
    encoding: str = option("utf-8", "text encoding of the corpus files")
    normalize: str = option("nfc", "Unicode normalization of corpus and seeds", choices=NORMALIZATIONS)
    min_count: int = option(1, "characters seen fewer times become one unknown symbol")
    coverage: float = option(1.0, "keep the most frequent characters covering this fraction; the rest: unknown")
    tokenizer: str = option("char", "char: one id per character; sentencepiece: learned pieces", choices=TOKENIZERS)
    spm_model: str = option("bpe", "sentencepiece model type (with --tokenizer sentencepiece)", choices=SPM_MODELS)
    vocab_size: int | None = option(
        None, "sentencepiece pieces (default: char: every character; bpe/unigram: the characters + 2048)"
    )
    # optimisation
    lr: float = option(5e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = option(0.05, "final learning rate as a fraction of --lr (cosine decay)")
    warmup_steps: int = option(100, "linear warm-up steps")
    weight_decay: float = option(0.1, "AdamW weight decay on weight matrices")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: off)")
    weight_average: float = option(
        0.0, "score, keep and sample a moving average of the weights with this decay per step, e.g. 0.999 (0: off)"
    )
    random_seed: int = option(
        1337,
        "seed for the initial weights and dropout (the text is always read in the same order); only its low 32 bits "
        "count on a CPU (torch's generator): seed + 2**32 trains seed's run",
    )
    # debugging
    detect_anomaly: bool = option(False, "torch autograd anomaly detection, to debug NaN (slow)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject impossible values with a message naming the option, before anything is read or built:
        types and choices, then counts, the vocabulary's options, rates, and where the run goes; then keeps
        the values halfwidth.py's rule read as read (`store_as_read`)."""
        refuse_added_limits(dataclasses.asdict(self))  # a '+' first: `max_steps='+100'` is no integer, but meant one
        check_types(self)
        check_choices(self)
        text_decoder(self.encoding)  # an unknown --encoding fails here, before any file is read
        self.check_counts()
        self.check_vocabulary()
        self.check_rates()
        if not DEVICE_PATTERN.fullmatch(device_name(self.device)):
            hint = retype_hint(str(self.device))
            raise CharLMError(f"{said('device')} must be {DEVICE_FORMS}, not {SHOWN.repr(self.device)}{hint}")
        check_seed(self.random_seed)
        self.max_seconds()  # parses --max-time or raises
        self.checkpoint_interval()
        store_as_read(self)

    def check_counts(self) -> None:
        """Sizes, steps and threads: whole numbers within their bounds (`MAXIMA` keeps a typo such as
        --hidden 40000000 from becoming an out-of-memory crash)."""
        for f in dataclasses.fields(self):  # the seed's own check names its range
            value = getattr(self, f.name)
            if isinstance(value, int) and f.name != "random_seed" and not INT64[0] <= value <= INT64[1]:
                raise CharLMError(f"{said(f.name)} must be a 64-bit integer, not {SHOWN.repr(value)}")
        for name in ("layers", "hidden", "seq_len", "batch_size", "eval_every"):
            if getattr(self, name) is None:  # unset: the run's plan fits it (plan.py)
                continue
            if getattr(self, name) < 1:
                raise CharLMError(f"{said(name)} must be at least 1, not {getattr(self, name)}")
            if getattr(self, name) > MAXIMA.get(name, float("inf")):
                raise CharLMError(f"{said(name)} must be at most {MAXIMA[name]}, not {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise CharLMError(f"{said('max_steps')} must be at least 1, not {self.max_steps}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise CharLMError(f"{said('threads')} must be between 1 and {MAX_THREADS}, not {self.threads}")
        if self.sample_every < 0:
            raise CharLMError(f"{said('sample_every')} must be 0 or more, not {self.sample_every}")
        if self.patience < 0:
            raise CharLMError(f"{said('patience')} must be at least 0, not {self.patience}")

    def check_vocabulary(self) -> None:
        """The options that decide the token ids, each with the tokenizer it belongs to."""
        if self.min_count < 1:
            raise CharLMError(f"{said('min_count')} must be at least 1, not {self.min_count}")
        if not 0.0 < self.coverage <= 1.0:
            raise CharLMError(f"{said('coverage')} must be in (0, 1], not {self.coverage}")
        if self.tokenizer == "char" and self.vocab_size is not None:
            raise CharLMError(
                f"{said('vocab_size')} needs {said('tokenizer', 'sentencepiece')} (the char vocabulary is the corpus's)"
            )
        if self.tokenizer == "sentencepiece" and self.min_count != 1:
            raise CharLMError(
                f"{said('min_count')} applies to {said('tokenizer', 'char')}; with sentencepiece use {said('coverage')}"
            )
        low, high = VOCAB_SIZE_RANGE
        if self.vocab_size is not None and self.vocab_size < low:
            raise CharLMError(f"{said('vocab_size')} must be at least {low}, not {self.vocab_size}")
        if self.vocab_size is not None and self.vocab_size > high:
            raise CharLMError(f"{said('vocab_size')} must be at most {high:,}, not {self.vocab_size:,}")

    def check_rates(self) -> None:
        """Fractions, rates and the optimizer's numbers: each within the range where it means something."""
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise CharLMError(f"{said('dropout')} must be in [0, 1), not {self.dropout}")
        if not 0.0 < self.val_fraction < 1.0:
            raise CharLMError(f"{said('val_fraction')} must be between 0 and 1, not {self.val_fraction}")
        if not 0 < self.lr < float("inf"):
            raise CharLMError(f"{said('lr')} must be a positive number, not {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise CharLMError(f"{said('min_lr_ratio')} must be in [0, 1], not {self.min_lr_ratio}")
        if not 0.0 <= self.weight_average < 1.0:
            raise CharLMError(f"{said('weight_average')} must be in [0, 1), not {self.weight_average}")
        for name in ("warmup_steps", "weight_decay", "grad_clip"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise CharLMError(f"{said(name)} must be a number of 0 or more, not {getattr(self, name)}")

    def max_seconds(self) -> float | None:
        """--max-time in seconds; None: no time limit."""
        return parse_duration(self.max_time)

    def require_limit(self) -> None:
        """A run must stop by itself: steps, time, or both."""
        if not self.max_steps and not self.max_seconds():
            raise CharLMError(
                f"give the run a limit: {said('max_steps', metavar='N')} or {said('max_time', metavar='DURATION')}"
            )

    def checkpoint_interval(self) -> tuple[int | None, float | None]:
        """--checkpoint-every as (steps, None) or (None, seconds); (None, None) when off."""
        text = str(self.checkpoint_every)
        steps = step_count(text)
        if steps is None:
            return None, parse_duration(text, name="checkpoint_every", offered=checkpoint_cadences())
        if steps == math.inf:  # shown by its size: 5,000 digits would fill the terminal
            digits = sum(map(str.isdecimal, half_width(text)))
            raise CharLMError(
                f"{said('checkpoint_every')} must be a 64-bit integer of steps, not a number of {digits:,} digits; "
                f"give {checkpoint_cadences()}"
            )
        if steps < 1:
            raise CharLMError(f"{said('checkpoint_every')} must be at least 1 step; give {checkpoint_cadences()}")
        return int(steps), None

    def to_dict(self) -> dict:
        """The options as JSON types, as a checkpoint and run.json keep them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The config a checkpoint kept; a key of an option since removed is dropped, so an older run still loads."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def changed_options(self, other: Config) -> dict[str, tuple[object, object]]:
        """Each option whose value `other` changes: (this one's, `other`'s), in the fields' order."""
        values = ((f.name, getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))
        return {name: (old, new) for name, old, new in values if old != new}

    def unresumable_changes(self, other: Config, also: tuple[str, ...] = ()) -> list[str]:
        """Options a resume may not change (but for those `also` allowed) that differ, as `--name: a -> b` items."""
        return [
            f"{said(name)}: {old} -> {new}"
            for name, (old, new) in self.changed_options(other).items()
            if name not in (*RESUMABLE, *also)
        ]


def check_seed(seed: int) -> None:
    """A seed within `SEED_RANGE`, so that every offset charlm adds to it is still a seed torch takes."""
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise CharLMError(
            f"{said('random_seed')} must be between {low} and {high} (a 64-bit integer), not {SHOWN.repr(seed)}"
        )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


def checkpoint_cadences() -> str:
    """What --checkpoint-every takes, as a refusal of it offers: a cadence, in steps or time, or none, whose
    run still saves latest.pt at each evaluation and at the end (not a "no limit": it limits nothing)."""
    return (
        f"steps (e.g. 1000), a duration (e.g. 10m) or {said('checkpoint_every', 'none')} to save only at "
        "evaluations and the end"  # said's 'none' in Python too: the field takes no None
    )


def parse_duration(
    text: str | float | None,
    flag: str | None = None,
    required: bool = False,
    most: float | None = None,
    name: str = "max_time",
    offered: str | None = None,
) -> float | None:
    """'90s', '10m', '1h', '1h30m' or a number of seconds -> seconds (full-width forms read as ASCII, as
    halfwidth.py's rule reads every option); None/'none' -> no limit, unless
    `required`; `most`: the most seconds `flag` takes; `name`: the field read, `flag`: its option as
    said, unset: `name` said (--max-time), so its no-limit is offered as its caller writes it; `offered`:
    what a refusal offers instead of a duration or no limit, for a field that takes more (steps too). An
    empty text is refused: `--max-time "$BUDGET"`, BUDGET unset, means a limit that went missing, not none."""
    unreadable = unreadable_value(name, text, flag)  # said as its caller names it, before `flag` falls back to said's
    flag = flag or said(name)
    no_limit = said(name, "none") if flags_said() else said(name, None)  # Python's None
    if isinstance(text, str) and not text.strip():
        remedy = offered or "a duration such as 10m" + ("" if required else f", or {no_limit} for no limit")
        raise CharLMError(f"{flag} is empty (a shell variable left unset gives an empty one): give {remedy}")
    if text is None or (isinstance(text, str) and text.strip().lower() == "none"):
        if required:
            raise CharLMError(f"{flag} needs a duration, such as 5m or 1h")
        return None
    try:
        seconds = float(text) if isinstance(text, (int, float)) else duration_seconds(text)
    except ValueError as unread:
        remedy = f"give {offered}" if offered else "write a duration such as 90s, 10m or 1h"
        raise CharLMError(f"{unreadable}; {str(unread) or remedy + retype_hint(text, DURATION_UNITS)}") from None
    if not 0 < seconds < math.inf:  # NaN too; infinity (a float, or 400 digits of hours) is no duration either
        remedy = f"use {no_limit} for no limit" if not (offered or required) else "give a duration such as 5m or 1h"
        remedy = f"give {offered}" if offered else remedy
        kind = "positive" if seconds <= 0 else "a finite duration"
        raise CharLMError(f"{flag} must be {kind}, not {SHOWN.repr(text)} ({remedy})")
    if most is not None and seconds > most:
        raise CharLMError(f"{flag} must be at most {most / 3600:g}h, not {SHOWN.repr(text)}")
    return seconds


def duration_seconds(text: str) -> float:
    """The seconds a duration's text says, 0 too: parse_duration refuses it, and a '+0' is told it adds
    nothing (`refuse_added_limits`). Raises ValueError, with what to write where it says more than "unreadable"."""
    spec = half_width(text).strip().replace(" ", "")
    parts = list(_DURATION.finditer(spec))
    if not parts or "".join(p.group(0) for p in parts) != spec:
        raise ValueError("")
    if len(parts) > 1 and not all(p.group(2) for p in parts):  # 1h30: 30 seconds or 30 minutes?
        raise ValueError("give each number its unit, e.g. 1h30m")
    return sum(float(p.group(1)) * _UNIT_SECONDS[(p.group(2) or "").lower() or None] for p in parts)


def is_duration(text: str) -> bool:
    """Whether `text` is a duration a run takes (`duration_seconds`' rule): some seconds, not none."""
    try:
        return 0 < duration_seconds(text) < math.inf
    except ValueError:
        return False


# A number of steps as click's int() reads `--max-steps 1_000`: digits (any script's, as int() and `\d` read
# them: not '²'), underscores between them.
STEP_COUNT = re.compile(r"\d+(?:_\d+)*")


def step_count(text: str) -> int | float | None:
    """`text` as a number of steps, as click's int() reads --max-steps: the one rule of its '+' limits,
    --checkpoint-every and run.json's counts, so that none takes a count another refuses. Full-width digits
    read as ASCII (halfwidth.py's rule); None for any other text (a duration, '²', '-5', 'True'); math.inf
    past a 64-bit integer (`INT64`), as `duration_seconds` reads 400 digits of hours: no run reaches it, and
    int() reads no more than 4,300 digits."""
    text = half_width(text).strip()
    if not STEP_COUNT.fullmatch(text):
        return None
    digits = text.replace("_", "").lstrip("0") or "0"
    steps = int(digits) if len(digits) <= len(str(INT64[1])) else math.inf
    return steps if steps <= INT64[1] else math.inf


def added_limits(values: dict) -> dict[str, tuple[float, str]]:
    """The limits among `values` given with a '+' (`--max-steps +100`, `max_time='+10m'`): each one's steps
    or seconds added, and its text after the '+'. One that cannot be read so is left to be refused as given."""
    added = {}
    for name in LIMITS:
        text = as_number(values[name]).strip() if isinstance(values.get(name), str) else ""
        more = text[1:].strip()
        if not text.startswith("+"):
            continue
        steps = step_count(more) if name == "max_steps" else None
        if steps is not None and steps < math.inf:  # past a 64-bit integer: refused as given, as max_steps is
            added[name] = (steps, more)
        elif name == "max_time":
            with contextlib.suppress(ValueError):
                seconds = duration_seconds(more)
                if seconds < math.inf:  # 400 digits of hours: refused as given, as no finite duration
                    added[name] = (seconds, more)
    return added


def refuse_added_limits(values: dict, step: int = 0, elapsed: float = 0.0, run: object = None) -> None:
    """Refuse a limit given with a '+' for that much more (`--max-steps +100` on a run at step 200): limits
    count the whole run, a resumed `run`'s `step`s and `elapsed` seconds too, so the refusal gives the whole
    run's figure for as much more: `--max-steps 300`."""
    for name, (more, more_text) in added_limits(values).items():
        opening, example = f"{said(name, values[name])}: limits count the whole run", ""
        if not more:  # +0: its whole figure is under 1 step or 1 second, or spent; one charlm takes is offered
            kind = "a figure" if name == "max_steps" else "a duration"
            opening, example = f"{opening}, and +{more_text} adds nothing", f"{kind}, e.g. "
            more, more_text = (1000, "1000") if name == "max_steps" else (600, "10m")
        whole = step + more if name == "max_steps" else duration_said(elapsed + more) if run else more_text
        if run is None:
            raise CharLMError(f"{opening}; give {example}{said(name, whole)}")
        trained = f"{step} steps" if name == "max_steps" else duration_said(elapsed)
        raise CharLMError(
            f"{opening}; {one_line_path(run)} has trained {trained}: for {more_text} more give {said(name, whole)}"
        )


def duration_said(seconds: float) -> str:
    """`seconds`, to the nearest second, as --max-time reads a duration: '11m35s', '1h', '0s'."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, rest = divmod(rest, 60)
    return "".join(f"{count}{unit}" for count, unit in ((hours, "h"), (minutes, "m"), (rest, "s")) if count) or "0s"


@keywords_named
@dataclass
class SampleConfig:
    """Sampling options and their defaults, for `charlm sample` and `charlm.generate(...)` alike; a
    SampleConfig goes to generate or stream by name: `charlm.generate(model, seed, **dataclasses.asdict(config))`.

    Raises CharLMError, naming the field, for an unknown field, a value of the wrong type or out of
    range, or a form or template that cannot be used.
    """

    length: int = option(500, "characters to generate after the seed")
    temperature: float | tuple[float, ...] | None = option(  # None: not given, so that greedy can refuse one given
        None,
        "below 1: safer text, above 1: wilder; a list such as 0.5,0.8,1.0: on the command line one labeled "
        f"sample per value, in Python a schedule cycled per character  [default: {TEMPERATURE} when sampling (not with --greedy)]",
    )
    num_samples: int = option(1, "samples generated side by side in one batch")
    random_seed: int | None = option(
        None,
        "makes sampling reproducible; the first sample uses this seed, the next seed + 1, ...; only its low 32 "
        "bits count (torch's generator): seed + 2**32 writes seed's text",
    )
    stop: str | None = option(
        None,
        "end a sample with this text once it writes it (kept, as a sentence keeps its '.'), e.g. '\\n\\n' for a blank line",
    )
    top_k: int | None = option(None, "sample only among the K likeliest characters")
    top_p: float | None = option(
        None, "nucleus sampling: only the smallest set of characters whose probability reaches P"
    )
    greedy: bool = option(False, "always take the likeliest character (so no temperature, top-k or top-p with it)")
    repetition_penalty: float = option(
        1.0,
        "above 1: discourage every character in the recent window, the seed's end included, however often it is there",
    )
    repetition_window: int = option(
        64, "how many recent characters (the seed's, then the sample's) the repetition penalty looks at"
    )
    presence_penalty: float = option(
        0.0,
        "OpenAI's, -2 to 2 (above 0 discourages): taken once off the logit of any character the sample itself wrote, not its seed",
    )
    frequency_penalty: float = option(
        0.0,
        "OpenAI's, -2 to 2 (above 0 discourages): taken off a character's logit for each time the sample itself wrote it, not its seed",
    )
    logit_bias: dict[str | int, float] | None = option(  # noqa: RUF009 -- a field() whose default is None
        None,
        "added to the logits of these characters (a str key: '3' is the digit 3) or token ids (an int key: 3) "
        "before sampling, -100 to 100; -100 bans one (`charlm sample --ban`)",
        command_line=False,
    )
    form: str | None = option(None, f"write a poem in this form: {FORM_CHOICES}")
    template: str | None = option(
        None,
        "write into this template: `_` is any character of the model's script, the rest is fixed; \\n breaks a line",
    )
    acrostic: str | None = option(None, "fix the first character of each verse of --form or --template, e.g. 春夏秋冬")
    precision: str = option(
        "fp32",
        "an LSTM's per-character step in fp32 or bf16 (about 2x faster for 64 samples on CPUs with bf16 hardware)",
        choices=SAMPLE_PRECISIONS,
    )

    def __post_init__(self) -> None:
        check_types(self)
        if self.temperature is None and not self.greedy:
            self.temperature = TEMPERATURE
        shown = SHOWN.repr(self.temperature)  # as the caller gave it: [0.5, -1.0] (the CLI checked its own text)
        if isinstance(self.temperature, (list, tuple)):
            self.temperature = tuple(float(t) for t in self.temperature)
        check_choices(self)
        if self.temperature is not None:
            check_temperatures(self.temperature if isinstance(self.temperature, tuple) else (self.temperature,), shown)
        if self.length < 0:
            raise CharLMError(f"{said('length')} must be 0 or more, not {self.length}")
        if self.length > MAX_LENGTH:
            raise CharLMError(f"{said('length')} must be at most {MAX_LENGTH:,}, not {self.length:,}")
        if self.top_k is not None and self.top_k < 1:
            raise CharLMError(f"{said('top_k')} must be at least 1, not {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise CharLMError(f"{said('top_p')} must be in (0, 1], not {self.top_p}")
        if not 0 < self.repetition_penalty <= MAX_REPETITION_PENALTY:
            raise CharLMError(
                f"{said('repetition_penalty')} must be a positive number of at most {MAX_REPETITION_PENALTY:g}, "
                f"not {self.repetition_penalty}"
            )
        if not 1 <= self.repetition_window <= MAX_REPETITION_WINDOW:
            raise CharLMError(
                f"{said('repetition_window')} must be between 1 and {MAX_REPETITION_WINDOW:,}, not "
                f"{self.repetition_window:,}"
            )
        for name in COUNT_PENALTIES:
            if not -MAX_COUNT_PENALTY <= getattr(self, name) <= MAX_COUNT_PENALTY:  # NaN too
                raise CharLMError(
                    f"{said(name)} must be between {-MAX_COUNT_PENALTY:g} and {MAX_COUNT_PENALTY:g} (OpenAI's range), "
                    f"not {getattr(self, name)}"
                )
        check_logit_bias(self.logit_bias)
        if self.stop == "":
            raise CharLMError(
                f"{said('stop')} must not be empty; give the text to stop at, e.g. {said('stop', STOP_EXAMPLE)}"
            )
        if not 1 <= self.num_samples <= MAX_SAMPLES:
            raise CharLMError(f"{said('num_samples')} must be between 1 and {MAX_SAMPLES}, not {self.num_samples}")
        if self.random_seed is not None:
            check_seed(self.random_seed)
        template_of(self.form, self.template, self.acrostic)  # a form that cannot be used is refused here
        store_as_read(self)

    def temperature_at(self, step: int) -> float | None:
        """The temperature of character `step`: a schedule (a tuple) is cycled, one value holds throughout;
        None under greedy, which has none."""
        t = self.temperature
        return t[step % len(t)] if isinstance(t, tuple) else t


def check_greedy_alone(given: dict) -> None:
    """Refuse greedy with a temperature, top-k or top-p among the options `given`: greedy takes the likeliest
    character, so they change nothing, and a text labeled with them (the CLI's, per temperature) misleads.
    The server's greedy (temperature 0) builds its SampleConfig itself, with the top_p an OpenAI client sends."""
    ignored = [said(name) for name in ("temperature", "top_k", "top_p") if given.get(name) is not None]
    if given.get("greedy") is True and ignored:
        one = len(ignored) == 1
        raise CharLMError(
            f"{said('greedy', True)} takes the likeliest character, so {' and '.join(ignored)} change{'s' * one} "
            f"nothing: drop {'it' if one else 'them'}, or drop {said('greedy', True)} to sample"
        )


def check_logit_bias(logit_bias: dict[str | int, float] | None) -> None:
    """Each bias within OpenAI's range, each key a character or a token id (which of them the model
    has, `decoding.bias_vector` says)."""
    for key, bias in (logit_bias or {}).items():
        if key == "" or isinstance(key, int) and key < 0:
            raise CharLMError(f"logit_bias keys are characters or token ids (0 or more), not {key!r}")
        if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:  # NaN too
            raise CharLMError(
                f"logit_bias[{key!r}] must be between {-MAX_LOGIT_BIAS:g} and {MAX_LOGIT_BIAS:g} "
                f"(-100 bans it), not {bias}"
            )


def parse_temperatures(text: str) -> tuple[float, ...]:
    """'0.5,0.8,1.0' -> (0.5, 0.8, 1.0), each checked; '０．５，０．８' too (halfwidth.py's rule)."""
    try:
        values = tuple(float(part) for part in as_number(text).split(","))
    except ValueError:
        raise CharLMError(
            f"{said('temperature')}: cannot read {SHOWN.repr(text)}; give a number or a list such as 0.5,0.8,1.0"
            f"{retype_hint(text)}"
        ) from None
    check_temperatures(values, text if len(text) <= SHOWN.maxstring else SHOWN.repr(text))  # thousands: shortened
    return values


def check_temperatures(values: tuple[float, ...], shown: str) -> None:
    """Each temperature must be a positive number; `shown`: the value as the user wrote it."""
    if not values:
        raise CharLMError(f"{said('temperature')} needs at least one number, not {shown}")
    if not all(0 < t < float("inf") for t in values):
        raise CharLMError(
            f"{said('temperature')} must be a finite number above 0, not {shown} (use {said('greedy', True)} for the likeliest text)"
        )
