"""What a sampling step would make a GPU wait for, or copy to it from the host, counted on a CPU.

CI has no GPU, and on a CPU a read of a tensor costs nothing: a step that waits for a GPU every
character looks as fast here as one that never does. `Syncs` counts, as the torch-call tests of
tests/test_sampler.py and tests/test_serve.py count calls (a `TorchFunctionMode` around the code),
the calls that would wait or copy on a GPU. What would be on the GPU is followed from where it comes
from: the model's parameters and buffers, what a factory makes with `device=` or `.to(device)` moves,
and whatever torch computes from those. What the code keeps on the host (a plain `torch.zeros(...)`,
a generator's draws, a list) is the host's, as on a GPU.

Kinds counted (`Syncs.counts`, a Counter; `waits` and `copies` sum them):
- "read": a device tensor read on the host, which waits for the GPU: `item`, `tolist`, `numpy`,
  `cpu`, `bool`/`int`/`float`/`index` of it, or a host tensor's `copy_` from it.
- "shape": a result whose size depends on a device tensor's values (`nonzero`, `masked_select`,
  `unique`, indexing with a boolean mask): the host waits to learn its size.
- "copy": host data copied to the device: `.to(device)` or `.cuda()` of a host tensor, `torch.tensor`
  or `as_tensor` given `device=`, a device tensor's `copy_` or item assignment from a host tensor, a
  host tensor beside device ones in an operation (an error on a GPU, unless it is a 0-d scalar).
- "index": a device tensor indexed with a Python list or a host index tensor, copied there each time.
A copy or a read is worth counting however small: each is a call into the driver, and a read from a
host's pageable memory, or a read back, waits for the work queued before it.
"""

from __future__ import annotations

import collections
import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}
SHAPES = {"nonzero", "masked_select", "unique", "unique_consecutive", "argwhere", "nonzero_static"}
FACTORIES = {"tensor", "as_tensor"}  # from Python data: a copy, given a device
INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}
WAITS, COPIES = ("read", "shape"), ("copy", "index")


def name_of(func) -> str:
    return getattr(func, "__name__", str(func))


def moves_to_a_device(args: tuple, kwargs: dict) -> bool:
    """Whether a `.to(...)` call names a device (not a dtype alone)."""
    return any(isinstance(value, (torch.device, str)) for value in (*args[1:], kwargs.get("device")))


class Syncs(TorchFunctionMode):
    """Counts the calls that on a GPU would wait for it or copy from the host to it (the module's kinds),
    for the tensors of `on_device` (modules: their parameters and buffers) and what comes of them.
    `Syncs.counts` holds the counts since the last `clear`; `where` what each was, for a failing test."""

    def __init__(self, *on_device: torch.nn.Module | torch.Tensor):
        super().__init__()
        self.device: dict[int, weakref.ref] = {}  # id -> the tensor, as long as it lives
        self.counts: collections.Counter = collections.Counter()
        self.where: list[str] = []
        for thing in on_device:
            tensors = [*thing.parameters(), *thing.buffers()] if isinstance(thing, torch.nn.Module) else [thing]
            for tensor in tensors:
                self.mark(tensor)

    def mark(self, tensor: torch.Tensor) -> torch.Tensor:
        self.device[id(tensor)] = weakref.ref(tensor)
        return tensor

    def on(self, tensor) -> bool:
        """Whether `tensor` would be on the GPU."""
        ref = self.device.get(id(tensor))
        return ref is not None and ref() is tensor

    def clear(self) -> None:
        self.counts.clear()
        self.where.clear()

    @property
    def waits(self) -> int:
        return sum(self.counts[kind] for kind in WAITS)

    @property
    def copies(self) -> int:
        return sum(self.counts[kind] for kind in COPIES)

    def count(self, kind: str, name: str) -> None:
        self.counts[kind] += 1
        self.where.append(f"{kind}: {name}")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = name_of(func)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        device = [t for t in tensors if self.on(t)]
        first = args[0] if args else None
        moved_here = name == "cuda" or (name == "to" and moves_to_a_device(args, kwargs))
        if moved_here and isinstance(first, torch.Tensor) and not self.on(first):
            self.count("copy", name)
            moved = func(*args, **kwargs)  # on a CPU, perhaps the tensor itself: a GPU's is a new one
            return self.mark(moved.clone() if moved is first else moved)
        if name in READS and device and first is device[0]:
            self.count("read", name)
            return func(*args, **kwargs)
        if name in FACTORIES and "device" in kwargs:
            self.count("copy", name)
            return self.mark(func(*args, **kwargs))
        if name in SHAPES and device:
            self.count("shape", name)
        if name == "copy_" and len(args) >= 2:
            destination, source = args[0], args[1]
            if self.on(destination) and not self.on(source):
                self.count("copy", name)
            elif self.on(source) and not self.on(destination):
                self.count("read", name)
            return func(*args, **kwargs)
        if name in INDEXING and self.on(first):
            index = args[1] if len(args) > 1 else None
            for part in index if isinstance(index, tuple) else (index,):
                if isinstance(part, list):
                    self.count("index", f"{name} with a list")
                elif isinstance(part, torch.Tensor) and not self.on(part) and part.dim():
                    self.count("index", f"{name} with a host tensor")
                elif isinstance(part, torch.Tensor) and part.dtype == torch.bool:
                    self.count("shape", f"{name} with a mask")
            value = args[2] if name == "__setitem__" and len(args) > 2 else None
            if isinstance(value, torch.Tensor) and not self.on(value) and value.dim():
                self.count("copy", f"{name} of a host tensor")
        elif device and name not in INDEXING and name != "copy_":
            hosts = [t for t in tensors if not self.on(t) and t.dim()]
            if hosts:
                self.count("copy", f"{name} beside a host tensor")
        result = func(*args, **kwargs)
        in_place = (name.endswith("_") and not name.endswith("__")) or name == "__setitem__" or "out" in kwargs
        if (device or kwargs.get("device") is not None) and not in_place:
            for output in tree_flatten(result)[0]:
                if isinstance(output, torch.Tensor):
                    self.mark(output)
        return result
