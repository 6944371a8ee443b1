"""Checkpoints: what they hold, checked on load (the file's bytes: checkpoint_file.py; what a refusal
advises instead: checkpoint_advice.py).

This module is the one owner of the payload's schema (format 3), in three parts:

    model     what sampling needs: the architecture (`ModelConfig`), the vocabulary, the weights
              (the weight average's, when the run keeps one)
    run       what the run is and how far it came: its options (`Config`), corpus, `Progress`, the
              device and precision it trained on (and the recurrent core's, and a CPU's cores, where
              the run recorded them), and for a fine-tuning run its base (`Base`)
    training  what only training needs to go on exactly where it stopped: the raw weights (when they
              differ from the model's), optimizer, data position, every stream's hidden state,
              random number generator states, gradient scaler

The names say what each function starts from:

    save(checkpoint, paths)    a Checkpoint -> its files (checkpoint_file: `serialize`, `write_atomic`)
    read(path)                 a file -> its Checkpoint (`read_bytes` -> `unpack` -> `Checkpoint.from_payload`)
    load(target)               whatever names a run (folder, name, file) -> its model, ready to sample
    write_model_folder(...)    a Checkpoint, less its training part -> a model folder (hub.py owns its files)
    read_model_folder(folder)  a model folder -> its Checkpoint, what is wrong named with the file holding it
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .checkpoint_advice import remedy
from .checkpoint_file import (
    VERSION,
    aside_note,
    damaged_checkpoint,
    read_bytes,
    serialize,
    verified,
    write_atomic,
)
from .config import INT64, Config
from .device import hardware_said, precision_said, resolve_device
from .device_names import STEP_DEVICE
from .errors import CharLMError, one_line_path
from .fields import SHOWN, as_stored, check_names, holds, kinds_said, missing_keys
from .model import CharLM, ModelConfig, State
from .model_skeleton import skeleton
from .optim import param_groups
from .runs import resolve
from .vocab import Vocab, Vocabulary
from .weight_checks import holds_nonfinite, unsound_weight, weight_problem
from .weight_shapes import architecture_of

WEIGHTS_PART = "weights"  # the part of a payload a model folder's model.safetensors holds (`damage_in`)
RANK = "head.rank"  # the adaptive head's id -> frequency rank: a weight of integers, a permutation
# The Python errors a payload of unexpected values meets while read (`_reason` says them in a few words)
PAYLOAD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)
Record = typing.TypeVar("Record")  # a dataclass of this module, built of a payload's record (`record_of`)
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # the floats a weight or state may be of


def unpack(data: bytes, path: Path, advice: Callable[[Path], str] = remedy) -> dict:
    """The payload of a checkpoint file's bytes, verified (`checkpoint_file.verified`) and in the
    current format; `path` names the file in errors, which end in `advice(path)`."""
    version, payload = verified(data, path, advice)
    if version == VERSION:
        return payload
    try:
        return _upgrade_v2(payload)
    except (KeyError, TypeError, CharLMError):  # one lacking what it reads (a626fb2's, 672a457's: test_compat)
        raise CharLMError(
            f"{one_line_path(path)}: a checkpoint of an early charlm (format 2, before data-parallel training), which "
            "this charlm cannot read: its corpus record and training state are of another kind; train the run again"
        ) from None


@dataclass
class Progress:
    """How far a run has come: saved in every checkpoint, shown by the progress bar and `charlm info`."""

    step: int = 0
    elapsed: float = 0.0  # training seconds (rank 0's clock: the schedule's and the checkpoints' time)
    chars: int = 0  # training tokens seen (targets scored), under its stored name: read and write `tokens`
    lr: float = 0.0  # the learning rate of the last step
    val_bpc: float | None = None
    val_step: int | None = None  # the step whose weights val_bpc scored
    best_bpc: float | None = None
    best_step: int | None = None  # the step whose weights best_bpc scored (best.pt's)
    # --patience's count and what it compares with: the --eval-every evaluations only. One made at a stop
    # between them (the end of a limit, Ctrl-C) keeps best.pt but is not counted, so a run interrupted
    # and resumed stops where one never stopped does.
    worse_evaluations: int = 0  # evaluations in a row since patience_best_bpc last improved
    patience_best_bpc: float | None = None  # the best val_bpc of those evaluations

    def scored(self, val_bpc: float, on_cadence: bool) -> bool:
        """Note a validation score of this step's weights: the best so far (as best.pt will record it) and,
        for an evaluation `on_cadence`, --patience's count. Returns whether it is a new best."""
        self.val_bpc = val_bpc
        improved = self.best_bpc is None or val_bpc < self.best_bpc
        if improved:
            self.best_bpc, self.best_step = val_bpc, self.step
        if on_cadence:
            better = self.patience_best_bpc is None or val_bpc < self.patience_best_bpc
            if better:
                self.patience_best_bpc = val_bpc
            self.worse_evaluations = 0 if better else self.worse_evaluations + 1
        return improved

    @property
    def step_scored(self) -> bool:
        """Whether val_bpc is this step's: a stop cut the last step's scoring short where not (its resume scores it).
        A charlm before val_step scored a run's last step before saving it: a val_bpc without one is that score."""
        return self.val_step == self.step or (self.val_step is None and self.val_bpc is not None)

    @property
    def tokens(self) -> int:
        """Training tokens seen: characters with a char vocabulary, pieces with sentencepiece. Stored as
        `chars`, named when every token was a character (the checkpoint keeps that key)."""
        return self.chars

    @tokens.setter
    def tokens(self, count: int) -> None:
        self.chars = count


@dataclass
class SavedTraining:
    """A checkpoint's training part: what a resumed run needs beyond the weights to continue exactly
    where it stopped. `train_state.capture` makes it of the live `train_state.TrainState`."""

    optimizer: dict
    position: int  # the data column the next window starts at (batches.Windows)
    epoch: int
    hidden: State | None  # every stream's state, in the one-process layout (layers, batch_size, hidden)
    rng: torch.Tensor  # rank 0's CPU generator state
    rank_rngs: torch.Tensor  # every rank's CPU generator state, one row each
    scaler: dict
    device_rngs: torch.Tensor | None = None  # every rank's GPU generator state (dropout on a GPU), one row each
    raw_weights: dict | None = None  # the trained weights when `model` holds their average


@dataclass
class Base:
    """The run a fine-tuning run started from: its name, the checkpoint file it loaded and that file's
    sha256, and its vocabulary size (the new run's vocabulary extends it; see `Vocab.first`)."""

    run: str
    path: str
    sha256: str
    vocab_size: int

    def describe(self, digits: int = 64) -> str:
        """The file and its hash, its first `digits` hex digits (a start line's `SHORT_DIGEST`, which tell
        files apart as git's short hashes do); the run's name is in the path (`runs.run_name_of`), so not again."""
        return f"{self.path} (sha256 {self.sha256[:digits]})"


@dataclass
class Checkpoint:
    """A checkpoint file's contents, read and checked: the model, run and training parts of the module
    docstring as fields (`to_payload` / `from_payload` convert), so no reader indexes a payload itself."""

    model_config: ModelConfig
    vocab: Vocabulary
    weights: dict  # the state dict of the weights to sample from
    config: Config
    # `TokenCorpus.record`: name, sources (files and folders made absolute, a corpus's name as given; none where
    # none was named: the built-in one), digest (the cache key), text (`tokens.text_digest`; not in older records)
    corpus: dict
    progress: Progress
    device: str = "cpu"  # where and in which precision it trained
    precision: str = "fp32"
    # what the recurrent core computed in there (device.core_precision: fp32 for bf16 on a CPU without
    # oneDNN's bf16 LSTM), recorded as the run found it; None in a checkpoint older than the record
    core_precision: str | None = None
    # the CPU cores it could use (threads.available_cores) where it trained on the CPU; None on a GPU or in an
    # older checkpoint: a resume on a machine with other cores says so (`hardware`)
    cores: int | None = None
    training: SavedTraining | None = None
    base: Base | None = None  # the run this one was fine-tuned from (--init-from)

    def model(self) -> CharLM:
        """The model, on the CPU, in eval mode."""
        self.check_charlm_weights()
        model = CharLM(self.model_config, self.vocab)
        model.load_state_dict(self.weights)
        return model.eval()

    def hardware(self) -> str:
        """What trained its steps (`device.hardware_said`), as far as it recorded it."""
        world = 1 if self.training is None else len(self.training.rank_rngs)
        return hardware_said(self.device, precision_said(self.precision, self.core_precision), world, self.cores)

    def base_vocab(self) -> Vocabulary | None:
        """A fine-tune's base vocabulary (the first ids of its own), which its corpus is prepared over
        again as it was; None for a run trained from scratch."""
        return None if self.base is None else self.vocab.first(self.base.vocab_size)

    def check_charlm_weights(self) -> None:
        """A checkpoint of an experiment's own model, with weights charlm's lacks (api.ModelBuilder:
        bench/parts.py), is read by the code that built it."""
        if extra := self.extra_weights():
            raise CharLMError(
                f"this checkpoint holds weights charlm's model has not ({', '.join(extra[:3])}): an experiment's "
                "model of its own (api.ModelBuilder); load it with the code that trained it"
            )

    def extra_weights(self) -> list[str]:
        """The names of the weights it holds beyond charlm's model of its architecture, sorted."""
        return sorted(set(self.weights) - set(skeleton(self.model_config, self.vocab).state_dict()))

    def to_payload(self) -> dict:
        """The dict of plain values and tensors the file holds (format 3's three parts), as `from_payload` reads it."""
        training = None if self.training is None else _field_values(self.training)
        return {
            "model": {"config": self.model_config.to_dict(), "vocab": self.vocab.to_dict(), "weights": self.weights},
            "run": {
                "config": self.config.to_dict(),
                "corpus": self.corpus,
                "progress": _field_values(self.progress),
                "device": self.device,
                "precision": self.precision,
                "core_precision": self.core_precision,
                "cores": self.cores,
                "base": None if self.base is None else _field_values(self.base),
            },
            "training": training,
        }

    @classmethod
    def from_payload(cls, payload: dict, source: Path, advice: Callable[[Path], str] = remedy) -> Checkpoint:
        """The checkpoint a verified payload holds, checked (`check`); what is wrong in it is one line
        naming `source` (the file it came from) and what to do instead (`advice`)."""
        try:
            return cls._build(payload)
        except CharLMError as e:
            why = str(e)
        except PAYLOAD_ERRORS as e:
            why = _reason(e)
        raise damaged_checkpoint(source, why, advice) from None

    @classmethod
    def _build(cls, payload: dict, described: tuple[ModelConfig, Vocabulary] | None = None) -> Checkpoint:
        """`from_payload`'s work, and a model folder's (`read_model_folder`), which names the file of what is
        wrong: each part converted and checked, a CharLMError naming the part (or a Python error). `described`:
        the model's description and vocabulary, read already (a model folder reads them first, to name the
        file at fault), so a sentencepiece model is not loaded twice."""
        check_fields(payload, {"model": dict, "run": dict, "training": dict | None})
        model, run, training = payload["model"], payload["run"], payload["training"]
        with part("run"):  # an older run has no base
            check_fields({"base": None, **run}, {"config": dict, "progress": dict, "base": dict | None})
        with part("run options"), as_stored():  # named as the file spells them (`lr`), not as flags
            config = Config.from_dict(run["config"])
        with part("progress"):
            # a checkpoint written before patience_best_bpc counted every evaluation against best_bpc
            progress = record_of(Progress, {"patience_best_bpc": run["progress"].get("best_bpc"), **run["progress"]})
        with part("training state"):
            training = None if training is None else record_of(SavedTraining, training)
        with part("base"):
            base = run.get("base")
            base = None if base is None or (isinstance(base, dict) and not base) else record_of(Base, base)
        model_config, vocab = described or (ModelConfig.from_dict(model["config"]), Vocab.from_dict(model["vocab"]))
        saved = cls(
            model_config=model_config,
            vocab=vocab,
            weights=model["weights"],
            config=config,
            corpus=run["corpus"],
            progress=progress,
            device=run["device"],
            precision=run["precision"],
            core_precision=run.get("core_precision"),  # older checkpoints have no record of it
            cores=run.get("cores"),
            training=training,
            base=base,
        )
        saved.check()
        return saved

    def check(self) -> None:
        """What every reader relies on, so that a payload written wrong, or edited with its checksum
        recomputed, fails here and not as a traceback deep in a command. Cheap: the architecture's
        weights are built on the meta device (nothing allocated) to compare names and shapes with."""
        model = skeleton(self.model_config, self.vocab)
        expected = model.state_dict()
        check_record(self, ("weights",))
        with part(WEIGHTS_PART):
            check_weights(self.weights, expected)
        check_record(self, ("corpus",))
        with part("corpus"):
            check_fields(self.corpus, {"name": str, "sources": list, "digest": str})
            if not all(isinstance(source, str) for source in self.corpus["sources"]):
                raise CharLMError("sources are not paths")
        with part("progress"):
            check_record(self.progress)
            if self.progress.best_bpc is not None and self.progress.val_bpc is None:
                raise CharLMError("best_bpc without val_bpc")
        check_record(self, ("device", "precision", "core_precision", "cores"))
        if self.base is not None:
            with part("base"):
                check_record(self.base)
                if not 1 <= self.base.vocab_size <= len(self.vocab):
                    raise CharLMError(f"vocab_size {self.base.vocab_size} is not within the vocabulary's")
        experiment = not set(self.weights) <= set(expected)  # an api.ModelBuilder's model: its code's to check
        if self.training is not None and not experiment:
            with part("training state"):
                check_training(self.training, model, self.config.batch_size)


def read(path: Path, charlm_model: bool = False, advice: Callable[[Path], str] = remedy) -> Checkpoint:
    """A checkpoint file's Checkpoint, verified and checked; any damage is a one-line error naming the file
    and ending in `advice(path)`, what to do instead. An exported model folder's model.safetensors reads as
    its folder (hub.py). `charlm_model`: for a reader that builds charlm's model of it (info, export,
    inspect, a resume), which an experiment's checkpoint is refused by, naming the file, as `model_on` refuses it."""
    if hub.names_weights(path):
        return read_model_folder(hub.folder_of(path))[0]
    saved = Checkpoint.from_payload(unpack(read_bytes(path), path, advice), path, advice)
    return of_charlm_model(saved, path, charlm_model)


def of_charlm_model(saved: Checkpoint, path: Path, charlm_model: bool) -> Checkpoint:
    """`saved`, read from `path`, refused (`check_charlm_weights`, naming the file) where its reader builds
    charlm's model of it (`charlm_model`) and it is an experiment's. A model folder needs no such check:
    its reader refuses weights its config.json's model has not."""
    if charlm_model:
        try:
            saved.check_charlm_weights()
        except CharLMError as e:
            raise CharLMError(f"{one_line_path(path)}: {e}") from None
    return saved


def read_model_folder(folder: Path) -> tuple[Checkpoint, str, dict[str, str] | None]:
    """A model folder's Checkpoint (hub.py), the sha256 of the weights file it was read from and the run
    it was exported from (`hub.source_in`), all of one read of its files. Its config.json and vocab.json
    are plain JSON, there to be read and so edited: what is wrong is named with the file that holds it
    (`damage_in`), a field as a .pt's part is (`check_fields`); a `layers`, `hidden`, `cell` or
    `head_cutoffs` its weights are not of is named as such, not as a missing weight or a shape, nor
    (fewer layers than the weights hold) as an experiment's model of its own, which `charlm export`
    never writes; a `vocab_size` vocab.json does not hold, as config.json's field too. The description and
    vocabulary read here are handed to `Checkpoint._build`, which reads them no second time."""
    config, vocab, weights, digest, source = hub.read_parts(folder)
    with damage_in(folder / hub.CONFIG):
        check_fields(config, {"model": dict, "run": dict})
        model_config = ModelConfig.from_dict(config["model"])
    with damage_in(folder / hub.VOCAB):
        vocabulary = Vocab.from_dict(vocab)
    described = model_config.to_dict()  # as config.json spells it: head_cutoffs a list
    for name, value in architecture_of(weights).items():
        if described[name] != value:
            raise hub.damaged(
                folder,
                f"{hub.CONFIG} has {name} {described[name]!r} but {hub.WEIGHTS} holds weights of {name} {value!r}: "
                "they do not match",
            )
    if model_config.vocab_size != len(vocabulary):
        raise hub.damaged(
            folder,
            f"{hub.CONFIG} has vocab_size {model_config.vocab_size} but {hub.VOCAB} holds {len(vocabulary)} ids: "
            "they do not match",
        )
    payload = {"model": {"config": config["model"], "vocab": vocab, "weights": weights}, "run": config["run"]}
    with damage_in(folder / hub.CONFIG):  # what is left to check: its run record, and the weights (`part`)
        saved = Checkpoint._build({**payload, "training": None}, (model_config, vocabulary))
    if extra := saved.extra_weights():
        raise hub.damaged(
            folder, f"{hub.WEIGHTS} holds weights its {hub.CONFIG}'s model has not: {', '.join(extra[:3])}"
        )
    return saved, digest, source


@contextlib.contextmanager
def damage_in(place: Path) -> Iterator[None]:
    """Errors in checking what the model folder's file `place` holds, as that file's damage (`hub.damaged`);
    the weights' (their `part`), as model.safetensors'."""
    try:
        yield
    except PartDamage as e:
        weights = e.part == WEIGHTS_PART
        raise hub.damaged(place.with_name(hub.WEIGHTS) if weights else place, e.why if weights else str(e)) from None
    except CharLMError as e:
        raise hub.damaged(place, str(e)) from None
    except PAYLOAD_ERRORS as e:
        raise hub.damaged(place, _reason(e)) from None


def write_model_folder(saved: Checkpoint, folder: Path, source: dict | None = None) -> list[Path]:
    """The model and its run record, without the training state, as a model folder (hub.py); `source`:
    the run it is exported from (`hub.exported_from`)."""
    payload = saved.to_payload()
    model = payload["model"]
    return hub.write(folder, model["config"], model["vocab"], model["weights"], payload["run"], source)


def read_with_digest(path: Path, charlm_model: bool = False) -> tuple[Checkpoint, str, dict[str, str] | None]:
    """`read`, with the sha256 of the very bytes it was parsed from (the base record of a fine-tuning
    run: a base still training may replace the file at any moment) and, for a model folder's weights,
    the run it was exported from (`hub.source_in`; None for a .pt file or an export older than the record)."""
    if hub.names_weights(path):  # the digest of the file read, not of one a re-export put there since
        return read_model_folder(hub.folder_of(path))
    data = read_bytes(path)
    saved = of_charlm_model(Checkpoint.from_payload(unpack(data, path), path), path, charlm_model)
    return saved, hashlib.sha256(data).hexdigest(), None


class PartDamage(CharLMError):
    """What is wrong with part `part` of a payload, `why`, said with the part's name: a model folder names
    the file that holds the part (`damage_in`)."""

    def __init__(self, part: str, why: str):
        super().__init__(f"{part}: {why}")
        self.part, self.why = part, why


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """Errors in reading or checking part `name` of a payload, as a CharLMError naming it (`PartDamage`)."""
    try:
        yield
    except CharLMError as e:
        raise PartDamage(name, str(e)) from None
    except PAYLOAD_ERRORS as e:
        raise PartDamage(name, _reason(e)) from None


def _reason(error: Exception) -> str:
    """A Python error met while reading a payload, as a few words for the one-line message (no traceback)."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r}" if error.args else "a field is missing"
    message = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def check_fields(record: dict, types: dict) -> None:
    """`record` has every field of `types` (those it lacks named at once: `missing_keys`), each holding a
    value of its type there: a type, or a union of them with None (a dataclass's hints). An int serves as
    a float; a float must be finite, an int within 64 bits (what torch and float() take); a bool is neither."""
    if missing := missing_keys(record, types):
        raise CharLMError(missing)
    for name, kind in types.items():
        value = record[name]
        if not holds(value, kind):
            raise CharLMError(f"{name} is {SHOWN.repr(value)}, not {kinds_said(kind)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CharLMError(f"{name} is {value}")
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:  # a count torch and float() take
            raise CharLMError(f"{name} is {SHOWN.repr(value)}, past a 64-bit integer")


def record_of(kind: type[Record], values: dict) -> Record:
    """`kind` (one of this module's dataclasses) of a payload's record `values`: a field added or lost is named
    as the file spells it (`unknown field stpe (did you mean step?)`, `no 'path'`), where Python's TypeError
    names the class ("Base.__init__() missing 3 required positional arguments")."""
    check_names(kind, values, "field")
    required = [
        f.name
        for f in dataclasses.fields(kind)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing := missing_keys(values, required):
        raise CharLMError(missing)
    return kind(**values)


def check_record(record: object, names: tuple[str, ...] | None = None) -> None:
    """`check_fields` for one of this module's dataclasses (all its fields, or `names`), against its own
    annotations: what a field may hold is said once, where the field is declared."""
    hints = typing.get_type_hints(type(record))
    check_fields(_field_values(record), {name: hints[name] for name in names or hints})


def check_weights(weights: dict, expected: dict) -> None:
    """`weights` has every weight of `expected` (a model's state dict), of its shape and kind (more may
    follow: an experiment's model of its own); every value in them is finite and within MAX_WEIGHT
    (`weight_checks.unsound_weight`). `weights` is a dict: its record's check said so."""
    missing = [n for n in expected if n not in weights]
    if missing:  # more is allowed: an experiment's model of its own (api.ModelBuilder) adds weights
        raise CharLMError(", ".join(f"{n} missing" for n in missing[:3]))
    for name, like in expected.items():
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tensor.is_floating_point() != like.is_floating_point():
            raise CharLMError(f"{name} is not a tensor of {like.dtype}")
        if problem := tensor_problem(name, tensor):
            raise CharLMError(problem)
        if tensor.shape != like.shape:
            raise CharLMError(f"{name} has shape {list(tensor.shape)}, the architecture's is {list(like.shape)}")
    if name := unsound_weight({name: weights[name] for name in expected}):
        raise CharLMError(weight_problem(name, weights[name]))
    if RANK in expected and not ranks_each_id_once(weights[RANK]):
        raise CharLMError(
            f"{RANK} is not a ranking of the {len(weights[RANK])} ids (each of 0 to {len(weights[RANK]) - 1} once)"
        )


def ranks_each_id_once(rank: torch.Tensor) -> bool:
    """Whether the adaptive head's `rank` (id -> frequency rank) gives each rank to one id: any other picks
    rows past the head's output (an IndexError), wraps round to the last (negative) or scores two ids as one."""
    return bool(torch.equal(rank.sort().values, torch.arange(len(rank), device=rank.device)))


def tensor_problem(name: str, value: object) -> str | None:
    """What makes `value`, read as `name`, no dense tensor of values that torch computes with, or None.
    weights_only=True unpickles sparse, nested and meta tensors, and tensors of float8 or complex numbers,
    too: each would be a torch traceback later (no shape to compare, no aminmax or isfinite, no copy into
    a dense parameter of real numbers), or a NaN left unchecked."""
    if not isinstance(value, torch.Tensor):
        return f"{name} is {str(value)[:20]!r}, not a tensor"
    if value.layout != torch.strided or value.is_nested or value.is_meta:
        return f"{name} is {kind_of_tensor(value)}, not a dense tensor of values"
    if (value.is_floating_point() or value.is_complex()) and value.dtype not in FLOATS:
        return f"{name} is a tensor of {value.dtype}, not of {', '.join(map(str, FLOATS))}"
    return None


def kind_of_tensor(tensor: torch.Tensor) -> str:
    """What a weight that is not a plain tensor is, for its error."""
    if tensor.is_nested:
        return "a nested tensor"
    return "a tensor of the meta device (no values)" if tensor.is_meta else f"a tensor of layout {tensor.layout}"


def check_training(training: SavedTraining, model: CharLM, batch_size: int | None) -> None:
    """What `train_state.restore` reads, shaped for `model` (on the meta device) and the run's streams."""
    check_record(
        training, ("raw_weights", "optimizer", "position", "epoch", "scaler", "rng", "rank_rngs", "device_rngs")
    )
    if training.raw_weights is not None:
        with part("raw_weights"):
            check_weights(training.raw_weights, model.state_dict())
    if training.position < 0 or training.epoch < 0:
        raise CharLMError(f"position {training.position} or epoch {training.epoch} is below 0")
    check_generator_states(training)
    with part("optimizer"):
        check_optimizer(training.optimizer, param_groups(model, Config()))
    if training.hidden is not None:
        check_hidden(training.hidden, model.config, batch_size)


def check_hidden(hidden: object, config: ModelConfig, batch_size: int | None) -> None:
    """Every stream's saved state is the state of `config`'s cell (an LSTM's two tensors, a GRU's or RNN's one),
    each of the one-process layout's shape (layers, batch_size, hidden) and finite: the resumed run's
    first window starts from it."""
    shape = [config.layers, batch_size or 0, config.hidden]
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    for state in states:
        if isinstance(state, torch.Tensor) and (problem := tensor_problem("hidden", state)):
            raise CharLMError(problem)
    if len(states) != (2 if config.cell == "lstm" else 1) or any(
        not isinstance(s, torch.Tensor) or list(s.shape) != shape for s in states
    ):
        raise CharLMError(f"hidden is not the {config.cell} state of shape {shape}")
    if any(map(holds_nonfinite, states)):
        raise CharLMError("hidden holds NaN or infinite values")


def check_generator_states(training: SavedTraining) -> None:
    """The random generators' states are bytes as torch keeps them (`train_state.restore` sets them): the
    CPU's of rank 0 (`rng`), and one row per rank of the CPU's (`rank_rngs`) and of the GPU's (`device_rngs`)."""
    states = {"rng": (training.rng, 1), "rank_rngs": (training.rank_rngs, 2), "device_rngs": (training.device_rngs, 2)}
    for name, (state, dims) in states.items():
        if state is not None and (state.dtype != torch.uint8 or state.dim() != dims or not state.numel()):
            raise CharLMError(f"{name} is not a random generator's state (a {dims}-D tensor of bytes)")
    size = torch.get_rng_state().numel()
    if training.rng.numel() != size or training.rank_rngs.shape[1] != size:
        raise CharLMError(f"rng or rank_rngs does not hold the CPU generator's state ({size} bytes)")
    if training.device_rngs is not None and len(training.device_rngs) != len(training.rank_rngs):
        raise CharLMError("device_rngs has not a row per rank, as rank_rngs has")


def check_optimizer(saved: dict, groups: list[dict]) -> None:
    """`saved` is an optimizer's state dict over `groups` (optim.param_groups): as many groups and
    parameters (what torch's load_state_dict checks), each parameter's state of its shape (what
    otherwise only the next step finds). `saved` is a dict: its record's check said so."""
    check_fields(saved, {"state": dict, "param_groups": list})
    if not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in saved["param_groups"]):
        raise CharLMError("param_groups are not groups of parameters")
    sizes = [len(group["params"]) for group in saved["param_groups"]]
    if sizes != [len(group["params"]) for group in groups]:
        raise CharLMError(f"groups of {sizes} parameters, the model's are {[len(g['params']) for g in groups]}")
    ids = [i for group in saved["param_groups"] for i in group["params"]]
    params = dict(zip(ids, [p for group in groups for p in group["params"]]))
    for key, state in saved["state"].items():
        if key not in params or not isinstance(state, dict):
            raise CharLMError(f"state of unknown parameter {key!r}")
        for name, value in state.items():
            if not isinstance(value, (int, float)) and (problem := tensor_problem(f"{name} of parameter {key}", value)):
                raise CharLMError(problem)
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[key].shape:
                raise CharLMError(
                    f"{name} of parameter {key} has shape {list(value.shape)}, not {list(params[key].shape)}"
                )
            if isinstance(value, torch.Tensor) and value.is_floating_point() and holds_nonfinite(value):
                raise CharLMError(f"{name} of parameter {key} holds NaN or infinite values")


class NotSaved(CharLMError):
    """A checkpoint `save` could not write to one of its paths: `saved` names those it was written to
    before (their files, or the files kept aside for them, hold this step), for the run to know which."""

    def __init__(self, message: str, saved: list[Path]):
        super().__init__(message)
        self.saved = saved


def save(checkpoint: Checkpoint, paths: list[Path], before_rename: Callable[[], None] | None = None) -> list[str]:
    """Write the checkpoint to each path in order (best.pt when it improved, then latest.pt), atomically;
    returns a note for each that went aside (`write_atomic`), for the run to print. Raises `NotSaved`
    at the first path that fails, naming those written before it; a CharLMError, writing nothing, for a
    checkpoint its readers would refuse (`Checkpoint.check`). `before_rename`: `files.replace_files`'."""
    try:  # what every reader refuses (NaN weights: a model built or trained in Python) is not written
        checkpoint.check()
    except CharLMError as e:
        raise CharLMError(f"{one_line_path(paths[0])}: not written: {e}; no command could read it back") from None
    data = serialize(checkpoint.to_payload())
    notes, saved, written = [], [], None
    for path in paths:
        try:
            aside = write_atomic(path, data, beside=written, before_rename=before_rename)
        except CharLMError as e:
            raise NotSaved(str(e), saved) from None
        if aside:
            notes.append(aside_note(path, checkpoint.progress.step))
        saved.append(path)
        written = aside or path
    return notes


def load(target: str | Path | None = None, device: str = STEP_DEVICE) -> CharLM:
    """The model of a checkpoint file or run folder (its best checkpoint), ready to generate on `device`
    (wherever it was trained: the file is read onto the CPU, then moved)."""
    where = resolve_device(device)
    path = resolve(target)
    return model_on(read(path), path, where)  # read's errors name the file


def model_on(saved: Checkpoint, path: Path, device: torch.device) -> CharLM:
    """`load` of a checkpoint read already (`saved`, from `path`, which its errors name): for a caller
    that needs more of it than the model, without reading the file twice. `device` is a torch.device the
    caller resolved (`resolve_device`) before reading the file, as `load` does, so a bad --device is
    refused first."""
    try:
        model = saved.model()
    except CharLMError as e:
        raise CharLMError(f"{one_line_path(path)}: {e}") from None
    except (KeyError, RuntimeError, TypeError) as e:  # a model folder's weights are its folder's (`hub.damaged`)
        why = type(e).__name__
        raise (hub.damaged(path, why) if hub.names_weights(path) else damaged_checkpoint(path, why, remedy)) from None
    return model.to(device).eval()


def _field_values(record: object) -> dict:
    """A dataclass's fields as a dict, values as they are (`dataclasses.asdict` would deep-copy every tensor)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _upgrade_v2(old: dict) -> dict:
    """A format-2 payload (one flat dict, the whole training config as the model's) in format 3's parts."""
    config = old["config"]
    vocab = Vocab.from_dict(old["vocab"])
    keys = ("cell", "layers", "hidden", "dropout")
    model_config = {**{k: config[k] for k in keys}, "vocab_size": len(vocab)}
    progress = {k: old[k] for k in ("step", "elapsed", "chars", "val_bpc", "best_bpc")}
    training = {
        "optimizer": old["optimizer"],
        "position": old["data"]["position"],
        "epoch": old["data"]["epoch"],
        "hidden": old["hidden"],
        "rng": old["rng"],
        "rank_rngs": old["rank_rngs"],
        "scaler": old["scaler"],
        "raw_weights": old.get("raw_model"),
    }
    return {
        "model": {"config": model_config, "vocab": old["vocab"], "weights": old["model"]},
        "run": {
            "config": config,
            "corpus": old["corpus"],
            "progress": progress,
            "device": config.get("device", "cpu"),
            "precision": config.get("precision", "fp32"),
        },
        "training": training,
    }
