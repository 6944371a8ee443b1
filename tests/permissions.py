"""Running code as chmod binds a user, also as root. CI runs as root, whose capabilities override file
permissions: a write-protected folder, an unreadable corpus or checkpoint is read and written all the
same, so a test that chmods and expects charlm's error would fail there, and one skipped there would
test nothing where the tests run. Here root is held to the permission bits instead: its overrides
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) are dropped, in a child process only, so root stays
the files' owner (pytest's tmp_path is root's own, unreachable to another uid) and chmod binds it as
it binds that owner. A user other than root is bound already: the same code runs unchanged."""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# linux/capability.h: the capabilities that override file permissions, and the version of capset's structs
FILE_PERMISSION_OVERRIDES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_DROP = 24


class CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapabilityData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def held_to_file_permissions() -> None:
    """In a child (forked, or about to exec): root's overrides of file permissions dropped from this
    thread's capabilities (capset) and from its bounding set (prctl), so that neither this process nor a
    program it execs has them. Raises where they cannot be dropped: a test would otherwise pass as root
    for root's reasons."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in FILE_PERMISSION_OVERRIDES:
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop root's file-permission capabilities")
    header, data = CapabilityHeader(CAPABILITY_VERSION_3, 0), (CapabilityData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "cannot read this process's capabilities")
    mask = ~sum(1 << capability for capability in FILE_PERMISSION_OVERRIDES) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop root's file-permission capabilities")


def as_a_user(function: Callable[[], object]) -> object:
    """`function()`, called in a forked child held to file permissions (as root; a user is already): its
    return value, or the exception it raised, raised here. A fork, not a new interpreter: milliseconds."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(reading)
        try:
            if os.geteuid() == 0:
                held_to_file_permissions()
            outcome = ("returned", function())
        except BaseException as e:  # noqa: BLE001  (every exception goes back to the test)
            outcome = ("raised", e)
        with os.fdopen(writing, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "raised":
        raise value
    return value


def run_as_a_user(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`args` run as chmod binds a user: as root, held to file permissions (`held_to_file_permissions`);
    skipped where root cannot be held (a container that denies CAP_SETPCAP)."""
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            preexec_fn=held_to_file_permissions if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.SubprocessError as e:
        pytest.skip(f"root here cannot run a process held to file permissions ({e})")
