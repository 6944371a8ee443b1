"""Data-parallel training under `torchrun`, with torch's DistributedDataParallel.

Every rank lays the corpus out as the same global `--batch-size` streams and trains streams
[r*B/W, (r+1)*B/W) of them, keeping those streams' hidden states. DDP averages the gradients, so
with equal shards the step is the one a single process takes over all B streams; the data position
is global, the same on every rank. Rank 0 alone logs, evaluates and writes checkpoints; a checkpoint
gathers every rank's hidden states into the single-process layout (layers, B, hidden), so any world
size that divides B can resume it.

Ranks never wait on each other's clocks per step: every SYNC_EVERY steps the ranks share rank 0's
elapsed time and whether a stop was asked of any of them, and all ranks take those as the schedule's time.

When the job breaks, one process says why, once: each rank posts on torch's key-value store (the one
the processes met through, kept by torchrun) the error it met, or that it is still here when a
collective failed under it; the rank with the error says it (rank 0 first where several met one),
else the lowest rank still here names the ranks that never posted, and every other rank exits 1 without
a word. A rank that stops answering (stuck, or stopped with SIGSTOP) is noticed after `--peer-timeout`
(PEER_TIMEOUT), not torch's 30 minutes; on the same machine, the pid each rank posts tells a rank that
ended from one stopped or stuck (`fate`).

While the ranks connect, torch's own waits outlast --peer-timeout: its store client tries a connection
twice (about twice the timeout), and the setup group waits SETUP_TIMEOUT. A watchdog thread (`bounded`)
gives each step of the connection --peer-timeout: past it, the rank says its line from the thread and
exits, torch's call left blocked (nothing was read or written yet).

While rank 0 works alone (`leader_first`: it prepares the corpus, a download may take it minutes, scores
validation and --eval-also, or writes a checkpoint), the others wait as long as it is alive: a thread of
rank 0 posts a heartbeat on the job's store (`beating`), and once none came for --peer-timeout the waiting
ranks say so, as for a collective that timed out (`await_leader`); a heartbeat proves rank 0 alive, not its
work going on, so one block may take LEADER_WORK_LIMIT x --peer-timeout at most (30 minutes at the default).
Ranks started without torchrun's agent have no such store: they wait for the corpus in a barrier of the
setup group, up to SETUP_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import itertools
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import torch
import torch.distributed as dist

from .config import PEER_TIMEOUT
from .errors import CharLMError, SaidElsewhere
from .launcher import QUIET_GRACE, by_torchrun, rank_name, tell_launcher
from .model import State, map_state

T = TypeVar("T")

SYNC_EVERY = 20  # steps between shares of rank 0's clock and the ranks' stop requests
SETUP_TIMEOUT = datetime.timedelta(minutes=30)  # without torchrun's store: the others' wait for rank 0's corpus
GRACE = 5.0  # seconds a failing rank waits for the others to post (or be seen ended) before it decides who speaks
SETUP_NOTE = "; the processes had not met yet, so nothing was read or written: run the same command again"
STORE_KEY = "charlm/{kind}/{rank}"  # kind: said (an error this rank says), here (still here), pid, beat, done
HEARTBEAT_EVERY = 5.0  # seconds between rank 0's heartbeats while the others wait (a quarter of the timeout if less)
HEARTBEAT_POLL = 0.1  # seconds between a waiting rank's looks at rank 0's heartbeat, at most
FIRST_POLL = 0.001  # seconds before a waiting rank's second look, doubling up to HEARTBEAT_POLL
# x --peer-timeout: the longest rank 0 works alone, beating; 30 minutes at charlm's 5, torch's own group timeout
LEADER_WORK_LIMIT = 6
# how `await_leader`'s error for a rank 0 past it begins: its text, which `peer_note` keeps as it wraps the
# error, tells `after_lost` which it was
OVERDUE = "process 0 worked alone for "

_setup_group = None  # a process group with SETUP_TIMEOUT, for `leader_first`'s waits where no store has a heartbeat
_job_store: AgentStore | None = None  # this rank's client of torchrun's store (`job_store`), from `connect` on
_peer_timeout = PEER_TIMEOUT  # the job's --peer-timeout, from `group` on
_leader_blocks = 0  # the `leader_first` blocks this rank has entered: rank 0's "done" post counts them


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank, world size and the rank within its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1."""
        if "WORLD_SIZE" not in os.environ:
            return SINGLE
        try:
            return cls(*(int(os.environ.get(name, "0")) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")))
        except ValueError:
            raise CharLMError("RANK, WORLD_SIZE and LOCAL_RANK must be numbers; start charlm with torchrun") from None

    def check_reachable(self) -> None:
        """Before the ranks meet, a rank started without torchrun (by hand, another launcher: torchrun sets
        them all) names itself and what it lacks, in one line: torch said a traceback for a missing
        variable, and a RANK past WORLD_SIZE waited --peer-timeout, then said it had lost the others."""
        name = rank_name()
        missing = [var for var in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(var, "").strip()]
        if missing:
            raise CharLMError(
                f"{name}: {', '.join(missing)} not set; a rank started without torchrun needs RANK (0 to "
                f"{self.world - 1}), WORLD_SIZE, MASTER_ADDR and MASTER_PORT (rank 0's host and a free port), "
                "or start every rank with torchrun"
            )
        if not 0 <= self.rank < self.world:
            raise CharLMError(f"{name}: RANK must be 0 to {self.world - 1} under WORLD_SIZE {self.world}")

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's streams of the global batch."""
        if batch_size % self.world:
            raise CharLMError(
                f"--batch-size {batch_size} does not split over {self.world} processes; "
                f"use a multiple of {self.world}, e.g. {batch_size + self.world - batch_size % self.world}"
            )
        per_rank = batch_size // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    @contextlib.contextmanager
    def alike(self) -> Iterator[None]:
        """Checks every rank makes alike before the processes meet (the options): under torchrun, whose one
        terminal shows every rank's output, rank 0 says what fails and the others exit 1 without a word; a
        rank started by hand, watched in a terminal of its own, says it too, naming itself."""
        try:
            yield
        except CharLMError as e:
            if not self.active or self.leader:
                raise self.speaks(e) from None
            if by_torchrun():
                raise SaidElsewhere(str(e)) from None
            raise self.speaks(CharLMError(f"process {self.rank} of {self.world}: {e}")) from None

    @contextlib.contextmanager
    def group(self, timeout: float = PEER_TIMEOUT) -> Iterator[Ranks]:
        """The process group for the job's lifetime: nccl for CUDA tensors, gloo for CPU ones. A collective
        that waits more than `timeout` seconds for a peer fails, and one rank says which peer it was."""
        global _setup_group, _job_store, _peer_timeout, _leader_blocks
        if not self.active:
            yield self
            return
        self.check_reachable()
        _peer_timeout = timeout
        # nccl's communicators start at a rank's first collective of CUDA tensors, on their GPU: a run on
        # the CPU of a GPU machine never starts CUDA (`use` makes a CUDA run's GPU the current one). The
        # timeout is each backend's: nccl's watchdog and gloo's transport both give up after it.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        self.connect(backend, timeout)
        try:
            yield self
        except CharLMError as e:
            raise self.after_error(e) from None
        except Exception as e:
            if isinstance(e, RuntimeError) and lost_peer(e):
                raise self.after_lost(e, timeout) from None
            self.post("said", str(e), GRACE)  # said by the CLI, or a bug's traceback: the others stay quiet
            raise
        finally:
            _setup_group = _job_store = None
            _peer_timeout, _leader_blocks = PEER_TIMEOUT, 0
            dist.destroy_process_group()

    def connect(self, backend: str, timeout: float) -> None:
        """Meet the other ranks: the job's store (this rank's pid posted on it), its process group, then
        the setup group. A peer lost while they connect (gloo's connectFullMesh, a store wait for a rank
        that never came) says one line, as a peer lost later does; torch's process group is gone after it."""
        global _setup_group, _job_store
        try:
            with self.bounded(timeout):  # torch's store client tries twice: ~2x the timeout
                _job_store = agent_store(timeout)
                self.post("pid", f"pid {os.getpid()} on {socket.gethostname()}")
                dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
            with self.bounded(timeout):  # its connection would wait SETUP_TIMEOUT, meant for rank 0's corpus
                _setup_group = dist.new_group(backend="gloo", timeout=SETUP_TIMEOUT)
        except RuntimeError as e:
            if not lost_peer(e):
                raise
            lost = self.after_lost(PeerLost(e, SETUP_NOTE), timeout)
            _setup_group = _job_store = None
            if dist.is_initialized():
                dist.destroy_process_group()
            raise lost from None

    @contextlib.contextmanager
    def bounded(self, timeout: float) -> Iterator[None]:
        """A step of connecting that may take `timeout` seconds at most. Past it a watchdog thread does
        what `after_lost` does for a failed collective (one rank names the silent ones) and ends this
        process with status 1: torch's call in the main thread cannot be interrupted."""
        done, deciding = threading.Event(), threading.Lock()

        def watch() -> None:
            if done.wait(timeout):
                return
            with deciding:  # the main thread, finished meanwhile, waits here until this process exits
                if done.is_set():
                    return
                silence = RuntimeError(f"no answer while connecting: timed out after {timeout:g}s (--peer-timeout)")
                abandon(self.after_lost(PeerLost(silence, SETUP_NOTE), timeout))

        threading.Thread(target=watch, name="charlm-setup-watchdog", daemon=True).start()
        try:
            yield
        finally:
            with deciding:
                done.set()

    def use(self, device: torch.device) -> None:
        """This rank trains on `device`: a GPU is made the current one, so that what torch puts on "the"
        GPU (nccl's streams, a barrier's tensor) goes on this rank's, not every rank's on GPU 0. A CPU
        run leaves CUDA alone: starting it put a context on a GPU of a machine the run did not use."""
        if self.active and device.type == "cuda":
            torch.cuda.set_device(device)

    @contextlib.contextmanager
    def leaving(self) -> Iterator[None]:
        """Rank 0 says how the run ended in this block (its last line, a sample) while the others wait for it
        as long as it is alive (`leader_first`), none of them exiting first (torchrun stops every rank once
        one fails); then each rank leaves on its own, the objects that hold the group (DistributedDataParallel's
        reducer) freed first. The run is over and saved: a peer that stops now (killed, exits, SIGSTOP) holds
        no one in a last barrier for --peer-timeout. Without torchrun's agent no heartbeat tells a live rank 0
        from a stuck one: the ranks leave together in a barrier."""
        if not self.active:
            yield
            return
        with self.leader_first(setup=False):
            yield
        gc.collect()
        if _job_store is None:
            dist.barrier()

    def after_error(self, error: CharLMError) -> CharLMError:
        """This rank met an error: rank 0 says its own; another rank stays quiet when rank 0 met one too
        (the same bad input, or the cause of this one), else says it, naming itself."""
        self.post("said", str(error), GRACE)
        if self.leader:
            return self.speaks(error)
        posted = self.roll_call(until=lambda said, here, ended: 0 in said or 0 in ended)
        if posted and 0 in posted[0]:
            return SaidElsewhere(str(error))
        return self.speaks(CharLMError(f"process {self.rank} of {self.world}: {error}"))

    def after_lost(self, error: RuntimeError, timeout: float) -> CharLMError:
        """A collective failed under this rank: a peer is gone or stopped answering. Once every rank has
        posted or is seen to have ended (or GRACE has passed): quiet if a rank says its own error; else the
        lowest rank still here names the ranks that never posted, and what the run folder holds."""
        self.post("here", "", GRACE)
        note = getattr(error, "note", "") or "; start the run again"
        posted = self.roll_call(until=lambda said, here, ended: len(said.keys() | here.keys() | ended) == self.world)
        if posted is None:  # no store to read: no one can tell who stopped
            return self.speaks(CharLMError(self.lost_message(error) + note))
        said, here = posted
        if said:
            return SaidElsewhere(next(iter(said.values())))
        if self.rank != min(here, default=self.rank):
            return SaidElsewhere("another process says which peer stopped")
        silent = [rank for rank in range(self.world) if rank not in here]
        if not silent:  # every rank is here, yet their collective failed: no one to name
            return self.speaks(CharLMError(self.lost_message(error) + note))
        pids = self.posts("pid")
        named = ", ".join(f"{rank} ({pids.get(rank, 'pid unknown')})" for rank in silent)
        which = f"process {named} of {self.world}"
        fates = {fate(pids.get(rank, "")) for rank in silent}
        if str(error).startswith(OVERDUE) and fates != {"ended"}:
            happened = (
                f"{which} worked alone for {LEADER_WORK_LIMIT * timeout:g}s ({LEADER_WORK_LIMIT} x --peer-timeout: "
                "preparing the corpus, scoring or writing a checkpoint) while its heartbeat went on: stuck (a hung "
                "disk or mount); torchrun ends the job; where its work is that slow, give a larger --peer-timeout"
            )
        elif "timed out" in str(error).lower() and fates != {"ended"}:
            why = {frozenset({"stopped"}): "stopped (SIGSTOP)", frozenset({"running"}): "stuck"}.get(
                frozenset(fates), "stuck, stopped (SIGSTOP), or ended on its machine"
            )
            happened = f"{which} stopped answering for {timeout:g}s (--peer-timeout): {why}; torchrun ends the job"
        else:
            happened = f"{which} ended without a word (killed, or out of memory: torchrun's summary says how)"
        return self.speaks(CharLMError(happened + note))

    def speaks(self, error: CharLMError) -> CharLMError:
        """The error this rank says for the job, told to torchrun too (`tell_launcher`)."""
        tell_launcher(str(error))
        return error

    def post(self, kind: str, value: str, timeout: float | None = None) -> None:
        """Put this rank's `kind` entry on the job's store (`job_store`; best effort: without one, nothing).
        Once the job broke, the store's calls wait `timeout` at most."""
        with contextlib.suppress(RuntimeError, ValueError):
            store = job_store()
            if timeout is not None:
                store.set_timeout(datetime.timedelta(seconds=timeout))
            store.set(STORE_KEY.format(kind=kind, rank=self.rank), value)

    def posts(self, kind: str) -> dict[int, str]:
        """Every rank's `kind` entry on the job's store, by rank (RuntimeError: no store to read)."""
        store = job_store()
        keys = {rank: STORE_KEY.format(kind=kind, rank=rank) for rank in range(self.world)}
        return {rank: store.get(key).decode() for rank, key in keys.items() if store.check([key])}

    def roll_call(self, until: Callable[[dict, dict, set], bool]) -> tuple[dict[int, str], dict[int, str]] | None:
        """The ranks' posts once the job broke: the errors they say, and the ranks still here; read until
        `until(said, here, ended)` holds or GRACE has passed. `ended`: the ranks whose process is seen to
        have ended on this machine (`fate`), which will post nothing more: looked at before the posts are
        read, so that what one posted before it ended is read too. A killed rank is counted at once, not
        waited for for GRACE. None: there is no store to read."""
        deadline = time.monotonic() + GRACE
        try:
            while True:
                ended = {rank for rank, posted in self.posts("pid").items() if fate(posted) == "ended"}
                said, here = self.posts("said"), self.posts("here")
                if until(said, here, ended) or time.monotonic() > deadline:
                    return said, here
                time.sleep(0.05)
        except (RuntimeError, ValueError):
            return None

    def lost_message(self, error: RuntimeError) -> str:
        """One line for a rank whose peers stopped while no one can tell which (the store went with them)."""
        detail = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip()).split(". ")[0].splitlines()[0]
        return (
            f"process {self.rank} of {self.world} lost the others ({detail}): one stopped first, and its own "
            "message or torchrun's summary says why"
        )

    @contextlib.contextmanager
    def leader_first(self, setup: bool = True) -> Iterator[None]:
        """Rank 0 runs the block (preparing the corpus cache, scoring validation) before the others do. It may
        take minutes (a download, a long --eval-also text): the others wait while rank 0's heartbeat goes on
        (`beating`, `await_leader`), not a clock. Ranks started without torchrun's agent have no store to
        post on: in `setup` they wait in a barrier (SETUP_TIMEOUT), else in their next collective."""
        global _leader_blocks
        if not self.active:
            yield
            return
        _leader_blocks += 1
        heard, barrier = _job_store is not None, _job_store is None and setup
        if not self.leader:
            if heard:
                self.await_leader(_leader_blocks)
            elif barrier:
                dist.barrier(_setup_group)
            yield
            return
        with self.beating():
            try:
                yield
            finally:
                if heard:
                    self.post("done", str(_leader_blocks))
                elif barrier:
                    dist.barrier(_setup_group)

    @contextlib.contextmanager
    def beating(self) -> Iterator[None]:
        """Rank 0's heartbeat on the job's store while the others wait for it (`await_leader`): a thread posts
        a growing count every HEARTBEAT_EVERY seconds, or a quarter of the peer timeout where that is less.
        A thread, not the work itself, so that a long step of it (a download) is not taken for a hang."""
        stop = threading.Event()
        every = min(HEARTBEAT_EVERY, _peer_timeout / 4)

        def beat() -> None:
            for count in itertools.count():
                self.post("beat", str(count))
                if stop.wait(every):
                    return

        thread = threading.Thread(target=beat, name="charlm-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def await_leader(self, block: int) -> None:
        """Wait until rank 0 posts that it ended `leader_first` block number `block`, as long as its heartbeat
        goes on (`beating`). PeerLost once none came for the peer timeout (stopped, stuck, or gone without its
        connection showing it), or at once where its process is seen to have ended (`fate`), or once the block
        has taken LEADER_WORK_LIMIT x the peer timeout, beating all along (alive, but stuck in a hung disk
        or mount; a slow one's write takes minutes, not half an hour): the group's `after_lost` says which it
        was. Without the store (torchrun killed, the ranks stopping), it waits no more.
        It looks again after FIRST_POLL, then twice as long each time up to HEARTBEAT_POLL: a short
        evaluation (every --eval-every steps) costs the waiting ranks about its own time, not up to 0.1 s more."""
        store = job_store()
        done, beating, pid = (STORE_KEY.format(kind=kind, rank=0) for kind in ("done", "beat", "pid"))
        beat, heard, poll = None, time.monotonic(), FIRST_POLL
        overdue = heard + LEADER_WORK_LIMIT * _peer_timeout
        try:
            leader = store.get(pid).decode() if store.check([pid]) else ""
        except RuntimeError:  # the store went with torchrun (killed): the next collective waits for rank 0
            return
        while True:
            try:
                if store.check([done]) and int(store.get(done)) >= block:
                    return
                latest = store.get(beating) if store.check([beating]) else None
            except RuntimeError:
                return
            if latest != beat:
                beat, heard = latest, time.monotonic()
            elif time.monotonic() - heard > _peer_timeout or fate(leader) == "ended":
                silence = RuntimeError(f"no heartbeat from process 0: timed out after {_peer_timeout:g}s")
                raise PeerLost(silence, "")  # `peer_note`, or `after_lost`, says what the run folder holds
            elif time.monotonic() > overdue:  # beating, yet never done: stuck alive (a hung disk or mount)
                raise PeerLost(RuntimeError(f"{OVERDUE}{LEADER_WORK_LIMIT * _peer_timeout:g}s"), "")
            time.sleep(poll)
            poll = min(2 * poll, HEARTBEAT_POLL)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (gloo has no AVG: a sum, divided)."""
        if not self.active:
            return value
        total = value.clone()
        dist.all_reduce(total)
        return total / self.world

    def from_leader(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values on every rank (a host sync: call it every SYNC_EVERY steps, not every step)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def clock_and_stop(self, elapsed: float, signum: int, device: torch.device) -> tuple[float, int]:
        """Rank 0's `elapsed` and the signal that asked any rank to stop (the highest number; 0: none) on
        every rank: a host sync, called every SYNC_EVERY steps. Rank 0's stop request alone was taken, and a
        rank sent SIGTERM by itself trained on. `elapsed` is never negative, so the others' 0 leaves rank 0's."""
        if not self.active:
            return elapsed, signum
        tensor = torch.tensor([elapsed if self.leader else 0.0, float(signum)], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        clock, highest = tensor.tolist()
        return clock, int(highest)

    def slowest(self, speed: float) -> float:
        """The lowest of the ranks' `speed`s, on every rank: a job goes as fast as its slowest process."""
        if not self.active:
            return speed
        lowest = torch.tensor([speed], dtype=torch.float64)  # on the CPU: gloo carries it under either backend
        dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
        return lowest.item()

    def broadcast_object(self, value: T) -> T:
        """Rank 0's picklable `value` on every rank (the run's plan: one message, once per run)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The ranks' equal-shaped tensors concatenated along `dim`, in rank order, on every rank."""
        if not self.active:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim)

    def gather_state(self, state: State | None) -> State | None:
        """Every rank's hidden state in the single-process layout (layers, batch_size, hidden), on the CPU."""
        return map_state(lambda s: self.gather(s, dim=1).cpu(), state)


def job_store() -> AgentStore:
    """The key-value store the ranks meet through, where it outlives them: torchrun's agent keeps it
    (`agent_store`). Where rank 0 keeps it (a launch without torchrun), a stopped rank 0 would hang every
    call to it, and a dead one takes it along: RuntimeError, as before the ranks meet."""
    if _job_store is None:
        raise RuntimeError("no store that outlives the ranks")
    return _job_store


def agent_store(timeout: float) -> AgentStore | None:
    """A client of the store torchrun's agent keeps for the job (None where it keeps none), reached as
    torch's env:// rendezvous reaches it, at MASTER_ADDR:MASTER_PORT. A client of charlm's own: torch
    names no public way to the store its process group holds, and this one is there before the group
    is, so a peer lost while they connect is named."""
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT", "")
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or not address or not port.isdigit():
        return None  # init_process_group says what is missing, as it did
    return AgentStore(dist.TCPStore(address, int(port), is_master=False, timeout=datetime.timedelta(seconds=timeout)))


class AgentStore:
    """torchrun's store (`agent_store`), let be once a call to it failed on its connection: a killed
    torchrun takes the store along, and each call after that wrote a C++ stack trace (2 KB) to stderr, or
    waited the store's timeout (--peer-timeout). The stopping ranks' heartbeats, posts and waits filled a
    stderr pipe no one read until a rank blocked in the write, and the other waited for it in a collective."""

    def __init__(self, store: dist.Store) -> None:
        self.store: dist.Store | None = store

    def set(self, key: str, value: str) -> None:
        self.call("set", key, value)

    def get(self, key: str) -> bytes:
        return self.call("get", key)

    def check(self, keys: list[str]) -> bool:
        return self.call("check", keys)

    def set_timeout(self, timeout: datetime.timedelta) -> None:
        self.call("set_timeout", timeout)

    def call(self, method: str, *args: object):
        """The store's `method`; RuntimeError at once where it is gone."""
        store = self.store
        if store is None:
            raise RuntimeError("torchrun's store is gone (torchrun ended)")
        try:
            return getattr(store, method)(*args)
        except dist.DistNetworkError:  # its connection broke: torch's client never makes another
            self.store = None
            raise


def fate(posted: str) -> str:
    """What became of the process whose pid post (`pid 4242 on host`) is `posted`, where this process
    can see it: "ended" (gone, or a zombie), "stopped" (SIGSTOP), "running"; "" where it cannot tell
    (another machine, no post, no /proc). A dead rank's connection may time out rather than close."""
    match = re.fullmatch(r"pid (\d+) on (.*)", posted)
    if not match or match[2] != socket.gethostname() or not Path("/proc/self/stat").exists():
        return ""
    try:
        state = Path(f"/proc/{match[1]}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "ended"
    except (OSError, IndexError):
        return ""
    return "ended" if state in "ZX" else "stopped" if state in "Tt" else "running"


def abandon(error: CharLMError) -> NoReturn:
    """End this process from a thread, as the CLI ends it on `error` (its line, or a quiet exit for a
    `SaidElsewhere`), while the main thread is held in torch's connection, where nothing was written."""
    if isinstance(error, SaidElsewhere):
        time.sleep(QUIET_GRACE)
    else:
        print(f"Error: {error}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def launcher_pid() -> int | None:
    """torchrun's agent, the parent of each process it starts (None: not started by torchrun)."""
    return os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else None


class PeerLost(RuntimeError):
    """A collective failed under a run (`lost_peer`); `note` says what its folder holds."""

    def __init__(self, error: RuntimeError, note: str):
        super().__init__(str(error))
        self.note = note


@contextlib.contextmanager
def peer_note(note: Callable[[], str]) -> Iterator[None]:
    """A peer lost inside the block stops the job with `note()` after the line that names it: what the
    run's folder holds now (its checkpoint, and the command that resumes it). Outside any, the job is
    started again."""
    try:
        yield
    except RuntimeError as e:
        if getattr(e, "note", "") or not lost_peer(e):  # a note said already, by an inner block
            raise
        raise PeerLost(e, note()) from None


def lost_peer(error: RuntimeError) -> bool:
    """A collective failed because another process of the job is gone: gloo's transport saw its
    connection closed or reset, or timed out (plain RuntimeErrors), or torch's distributed errors (nccl)."""
    dist_error = getattr(dist, "DistError", ())  # (older torch: none)
    return isinstance(error, (PeerLost, dist_error)) or "gloo/transport" in str(error)


SINGLE = Ranks()  # a plain process: rank 0 of 1
