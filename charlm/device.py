"""Where the model runs and in which precision: `--device` and `--precision` turned into torch objects.

On CUDA, `nn.LSTM` is cuDNN's fused RNN already; what this module adds is the choice of device, an
autocast context for forward + loss (bf16 where the GPU has it, else fp16), the gradient scaler the
recurrent core's real precision needs, and batch copies from pinned memory that do not wait for the GPU.

What autocast asks for is not what cuDNN's RNN runs in: torch casts a cuDNN RNN's inputs and weights
to fp16 under CUDA autocast whatever dtype was asked (`--precision bf16` gives an LSTM output of
float16; the embedding and a full head do run in bf16). fp16 gradients underflow without loss
scaling, so on CUDA any autocast run scales its loss (`core_precision`). On a CPU the core computes in
what torch's CPU autocast gives it: a bf16 LSTM and RNN, an fp32 GRU, and an fp32 LSTM where oneDNN has
no bf16 LSTM (a CPU without AVX-512, `cpu_core_dtype`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch

from .device_names import DEVICE_FORMS, DEVICE_PATTERN, device_name
from .errors import CharLMError
from .fields import SHOWN, said
from .halfwidth import retype_hint

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def available() -> list[str]:
    """The devices present, for error messages: cpu, each cuda:N, mps."""
    gpus = [f"cuda:{n}" for n in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu", *gpus, *(["mps"] if mps_available() else [])]


def resolve_device(name: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """`--device` -> torch.device. Under torchrun (world > 1) each rank takes GPU `local_rank`."""
    given, name = name, device_name(name)
    if not DEVICE_PATTERN.fullmatch(name):
        raise CharLMError(f"{said('device')} must be {DEVICE_FORMS}, not {SHOWN.repr(given)}{retype_hint(str(given))}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() and world == 1 else "cpu"
    present = ", ".join(available())
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CharLMError(
                f"{said('device', name)}: no CUDA GPU here (available: {present}); use {said('device', 'cpu')} or auto"
            )
        if ":" in name and world > 1:
            raise CharLMError(
                f"{said('device', name)} names one GPU; under torchrun use {said('device', 'cuda')}: rank r takes cuda:r"
            )
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise CharLMError(f"{said('device', f'cuda:{index}')}: no such GPU (available: {present})")
        return torch.device("cuda", index)
    if name == "mps":
        if not mps_available():
            raise CharLMError(
                f"{said('device', 'mps')}: no Apple GPU here (available: {present}); use {said('device', 'cpu')} or auto"
            )
        if world > 1:
            raise CharLMError(
                f"{said('device', 'mps')} cannot train with several processes; use {said('device', 'cpu')} or cuda"
            )
    return torch.device(name)


def has_float64(device: torch.device) -> bool:
    """Whether torch computes in float64 on `device`: not on mps, Apple's GPUs have none (torch raises
    TypeError). Sums over many values (scoring's) use float32 there."""
    return device.type != "mps"


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 matrix products in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32. (torch.cpu's probes are private: absent, the answer is no.)"""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`--precision auto` -> bf16 on a CUDA GPU that has it (fp16 on an older one), bf16 on a CPU
    with bf16 hardware (measured: 1.2-2.1x the chars/s, equal bpc at equal characters; README),
    fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cpu":
            return "bf16" if cpu_has_bf16() else "fp32"
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise CharLMError(f"{said('precision', 'fp16')} needs a CUDA GPU, not {device}; use bf16 or fp32")
    if precision == "bf16" and device.type == "mps":
        raise CharLMError(f"{said('precision', 'bf16')} is not supported on mps; use fp32")
    return precision


def auto_precision_reason(device: torch.device, core: type[torch.nn.Module] = torch.nn.LSTM) -> str:
    """What `resolve_precision("auto", device)` chooses for a model of recurrent `core`, and why."""
    chosen = resolve_precision("auto", device)
    if device.type == "cpu":
        why = (
            "this CPU does bf16 in hardware" if chosen == "bf16" else "this CPU has no bf16 hardware (emulated: slower)"
        )
    elif device.type == "cuda":
        why = "this GPU has bf16" if chosen == "bf16" else "this GPU has no bf16"
    else:
        why = f"lower precisions are not used on {device.type}"
    return f"--precision auto chose {precision_text(device, chosen, core)} on {device}: {why}"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context forward and loss run in: lower-precision matmuls, fp32 weights and optimizer. fp32
    turns autocast off, so a caller's own `torch.autocast` around `charlm.train` cannot lower it."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=_DTYPES[precision])


@functools.cache
def cpu_core_dtype(core: type[torch.nn.Module], dtype: torch.dtype) -> torch.dtype:
    """The dtype `core` (nn.LSTM, GRU or RNN) computes in under `torch.autocast("cpu", dtype)`, from one
    tiny pass: float32 where this CPU cannot run it there at all (oneDNN's bf16 LSTM needs AVX-512; an
    AVX2 CPU stops with "could not create a primitive descriptor"), since `CharLM.forward` then runs the
    core outside autocast. The probe's weights are zeros, drawn from no generator: a seeded run, or another
    thread's, draws as it would have (forking torch's generator would rewind a thread drawing meanwhile)."""
    with torch.no_grad():
        probe = core(4, 4, device="meta").to_empty(device="cpu")
        for weight in probe.parameters():
            weight.zero_()
        try:
            with torch.autocast("cpu", dtype=dtype):
                return probe(torch.zeros(2, 1, 4))[0].dtype
        except RuntimeError:
            return torch.float32


def core_precision(device: torch.device, precision: str, core: type[torch.nn.Module] = torch.nn.LSTM) -> str:
    """The precision the recurrent core really computes in under `autocast(device, precision)`:
    fp16 for any autocast on CUDA (cuDNN's RNN, see above), on a CPU what `cpu_core_dtype` found."""
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return precision
    if device.type == "cuda":
        return "fp16"
    return {torch.float32: "fp32", torch.float16: "fp16"}.get(cpu_core_dtype(core, _DTYPES[precision]), precision)


def precision_text(device: torch.device, precision: str, core: type[torch.nn.Module] = torch.nn.LSTM) -> str:
    """The precision as the run line states it, saying where the recurrent core differs: on a GPU
    `bf16 (recurrent core in fp16: cuDNN, loss scaled)`, on an AVX2 CPU `bf16 (recurrent core in fp32: ...)`."""
    real = core_precision(device, precision, core)
    why = "cuDNN, loss scaled" if device.type == "cuda" else f"torch has no {precision} {core.__name__} on this CPU"
    return precision_said(precision, real, why)


def precision_said(precision: str, real: str | None, why: str = "") -> str:
    """`precision`, with the precision the recurrent core really computed in (`real`) where it differs:
    `bf16 (recurrent core in fp32)`, `: why` after it where given. `real` None: not known, not said."""
    if real is None or real == precision:
        return precision
    return f"{precision} (recurrent core in {real}{f': {why}' if why else ''})"


def hardware_said(
    device: str, precision: str, world: int = 1, cores: int | None = None, *, with_index: bool = False
) -> str:
    """What a run trains on, as a resume compares it with what trained its checkpoint: `cuda bf16`,
    `cpu fp32 x 2 processes on 4 cores` (`precision` as `precision_said` says it). Speed figures are this
    hardware's, and torchrun's number of processes lays out the batches; a GPU's index (a rank's own, or
    the free one's) is no change of hardware, so only the start line (`with_index`) says it."""
    processes = f" x {world} processes" if world > 1 else ""
    shown = device if with_index else device.split(":")[0]
    return f"{shown} {precision}{processes}{f' on {cores} cores' if cores else ''}"


def hardware_change_said(was: str, now: str) -> str:
    """A resume's move to other hardware (`hardware_said`'s), as its start line and `charlm info` say it."""
    return f"on other hardware: {now} (was {was})"


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling where the core's gradients are fp16 (they underflow without it); elsewhere a
    disabled (pass-through) scaler."""
    return torch.amp.GradScaler(device.type, enabled=core_precision(device, precision) == "fp16")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: GPU kernels run asynchronously, so a timer must wait for them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def to_host(values: torch.Tensor) -> Callable[[], list]:
    """`values` read on the host later, by calling the result: on CUDA the copy starts now, into pinned
    memory, behind the work that made them, so work queued after it (the model's next step) runs on
    while the host waits for the copy alone. Elsewhere they are read when called. The event waited for
    is on the stream of `values`' own GPU, where the copy runs: the current device's (GPU 0 unless set)
    is another GPU's for a model on cuda:1, whose ids were read before the copy had brought them."""
    if values.device.type != "cuda":
        return values.tolist
    copy, copied = values.to("cpu", non_blocking=True), torch.cuda.Event()
    copied.record(torch.cuda.current_stream(values.device))

    def read() -> list:
        copied.synchronize()
        return copy.tolist()

    return read


def accelerator_rng_state(device: torch.device) -> torch.Tensor | None:
    """The state of the generator dropout draws from on a GPU, CUDA's or an Apple GPU's (mps), as a
    CPU tensor; None on a CPU, whose generator is torch's global one."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return None


def set_accelerator_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)


def seed_accelerator(seed: int, device: torch.device) -> None:
    """Seed the GPU's generator (`accelerator_rng_state`'s), where the device has one of its own. CUDA
    must have started (a model is on the device): its generators exist from then on."""
    if device.type == "cuda":  # not torch.cuda.manual_seed: it seeds the current device's (cuda:0 unless set)
        index = torch.cuda.current_device() if device.index is None else device.index
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU batch onto `device`; to a GPU through pinned memory, without waiting for the copy."""
    if device.type == "cpu":
        return batch
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
