"""Processes that start without importing torch: each is forked from a server process that imported
torch, its distributed package and charlm once, as Python's multiprocessing "forkserver" does. A rank of
a test's job then starts in milliseconds instead of the ~3 s of CPU a fresh `python -c` spends importing
(torch, and torch._dynamo that DDP and AdamW import), of the 2 cores both ranks share.

Each is still a process of its own, run as `python -c CODE ARGS` runs: its own argv, environment, folder,
standard streams (pipes to this process) and pid, signals sent to it by that pid, atexit handlers and
exit status as that command's. What the server has imported is the difference: environment variables
read while importing torch (OMP_NUM_THREADS) are the server's, which is started with the ranks' own.
So is what the interpreter made at its start, its locale and standard streams' encoding and buffering:
a server for a child at a terminal (`start`'s `terminal`) is started with a terminal as its stdin and
stdout, and the child's environment's locale (`server`'s key), as a command typed at one starts.

The server ends when the tests' process closes its socket, at their end or killed (SIGKILL, the OOM
killer, a CI timeout), and kills the children still running: a `charlm serve` a killed test run
started does not serve on for ever, with parent pid 1."""

from __future__ import annotations

import atexit
import fcntl
import io
import json
import os
import pickle
import pty
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable

# The server: imports, then forks a child per request on its socket and reports each child's exit.
SERVER = r"""
import fcntl, json, os, pickle, select, signal, socket, sys, termios
# what the interpreter set at its start (LC_CTYPE=C.UTF-8 where it coerced LANG=C, PEP 538; readline reads
# it), as it does for each child's environment, whose locale is the server's (`server`'s key)
made = {name: value for name, value in os.environ.items() if name not in json.loads(sys.argv[2])}
import torch, torch._dynamo, torch.distributed, torch.nn.parallel
import charlm.api, charlm.cli
import gc
gc.freeze()  # what the imports made is never collected: a child's collections and its exit don't touch (copy) its pages

channel = socket.socket(fileno=int(sys.argv[1]))
children = set()
while True:
    readable, _, _ = select.select([channel], [], [], 0.02)
    while children:  # report the children that ended: (pid, exit status as subprocess gives it)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if not pid:
            break
        children.discard(pid)
        channel.sendall(pickle.dumps(("ended", pid, os.waitstatus_to_exitcode(status))))
    if not readable:
        continue
    message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
    if not message:  # the tests are over, or their process was killed: what they started ends with them
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        break
    code, argv, env, cwd, terminal = pickle.loads(message)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: `python -c code argv...` from here on, with its streams, folder and environment
        channel.close()
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
            os.close(fd)
        if terminal:  # a session's leader, its stdin its controlling terminal: Ctrl-C and window sizes reach it
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # a hang-up ends a command typed at a terminal, whatever the tests' own process does with one (a CI run
        # under nohup ignores it, and its children inherited that: a test of a hang-up saw the run train on)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env | made)
        sys.argv = argv
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        sys.exit(0)
    for fd in fds:
        os.close(fd)
    children.add(pid)
    channel.sendall(pickle.dumps(("started", pid, None)))
"""


# `python -m charlm`, as `code` for `ForkServer.start` (sys.argv[0] becomes charlm/__main__.py's path)
CHARLM = "import runpy\nrunpy.run_module('charlm', run_name='__main__', alter_sys=True)"


class ForkServer:
    """The server process, started with `env` (and a terminal as its stdin and stdout if `terminal`, which
    it never reads or writes); `start` forks a child of it."""

    def __init__(self, env: dict[str, str], terminal: bool = False) -> None:
        self.terminal = None
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child = None  # stdin and stdout: this process's, or a terminal's
        if terminal:
            self.terminal, child = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(theirs.fileno()), json.dumps(list(env))],
            pass_fds=[theirs.fileno()], env=env, stdin=child, stdout=child,
        )  # fmt: skip
        theirs.close()
        if child is not None:
            os.close(child)
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.ended: dict[int, int] = {}

    def start(
        self, code: str, argv: list[str], env: dict[str, str], stdin: bool = False, terminal: int | None = None
    ) -> Forked:
        """`code` run as `python -c` runs it, with `argv` as sys.argv and `env` as its environment, in this
        folder, its stdout and stderr piped here; its stdin too if `stdin`, else /dev/null. With `terminal`
        (a pseudo-terminal's child end; a server started at a terminal) as its stdin and stdout instead,
        as a command typed there: its session's leader, that its controlling terminal; stderr piped here."""
        assert terminal is None or self.terminal is not None, "a child at a terminal needs a server started at one"
        if terminal is not None:
            in_write, out_read, (in_read, out_write) = None, None, (os.dup(terminal), os.dup(terminal))
        else:
            in_read, in_write = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), None)
            out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        pid = self.fork(code, argv, env, [in_read, out_write, err_write], terminal=terminal is not None)
        return Forked(self, pid, out_read, err_read, in_write)

    def fork(
        self,
        code: str,
        argv: list[str],
        env: dict[str, str],
        streams: list[int],
        cwd: str | None = None,
        terminal: bool = False,
    ) -> int:
        """`code` forked as `start` forks it, with `streams` (file descriptors, closed here) as its stdin,
        stdout and stderr, in folder `cwd` (this one if None); its pid, whose end `exit_status` reports.
        For a child whose streams are another process's (a stand-in for it that torchrun started)."""
        with self.lock:
            request = pickle.dumps((code, list(argv), env, cwd or os.getcwd(), terminal))
            socket.send_fds(self.channel, [request], streams)
            for fd in streams:
                os.close(fd)
            deadline = time.monotonic() + 60
            while not self.started:
                assert time.monotonic() < deadline, "the fork server started no process in 60 s"
                self.receive(timeout=1)
            return self.started.pop()

    def receive(self, timeout: float) -> None:
        """The server's messages within `timeout` seconds (0: those already sent; call holding the lock)."""
        self.channel.settimeout(timeout)
        try:
            while True:
                message = self.channel.recv(1 << 16)
                assert message, f"the fork server ended (exit status {self.process.poll()})"
                kind, pid, code = pickle.loads(message)
                if kind == "started":
                    self.started.append(pid)
                else:
                    self.ended[pid] = code
                self.channel.settimeout(0)  # and any sent with it
        except (TimeoutError, BlockingIOError):
            return

    def exit_status(self, pid: int, timeout: float) -> int | None:
        """The child's exit status, once the server has reported it (within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                self.receive(timeout=0)
                if pid in self.ended:
                    return self.ended[pid]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.receive(timeout=min(left, 0.05))

    def close(self) -> None:
        self.channel.close()
        self.process.wait(timeout=10)
        if self.terminal is not None:
            os.close(self.terminal)


class Forked:
    """A child of the fork server, read as a subprocess.Popen with its stdout and stderr piped is: pid,
    returncode, stdout (or None, at a terminal) and stderr (unbuffered binary files, so that a `readline`
    takes no more than its line), stdin (one, or None), poll, wait, communicate (text), send_signal,
    terminate, kill."""

    def __init__(self, server: ForkServer, pid: int, stdout: int | None, stderr: int, stdin: int | None = None) -> None:
        self.server, self.pid, self.returncode = server, pid, None
        self.stdout = None if stdout is None else io.FileIO(stdout)
        self.stderr = io.FileIO(stderr)
        self.stdin = None if stdin is None else io.FileIO(stdin, "w")
        self.streams = {stream: [] for stream in (self.stdout, self.stderr) if stream}  # what `communicate` read

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_status(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.exit_status(self.pid, 1e9 if timeout is None else timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"forked {self.pid}", timeout)
        return self.returncode

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """`input` written to its stdin, closed (a short text: written whole before reading); its stdout and
        stderr (what the caller has not read or closed) until it closes them, then its exit."""
        if self.stdin is not None and not self.stdin.closed:
            with self.stdin:
                self.stdin.write((input or "").encode())
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in self.streams:
                if not stream.closed:
                    selector.register(stream, selectors.EVENT_READ)
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"forked {self.pid}", timeout)
                for key, _ in selector.select(left):
                    chunk = key.fileobj.read(1 << 16)
                    self.streams[key.fileobj].append(chunk)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
        self.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
        # as Popen's text=True reads them: universal newlines; None for a stream not piped
        texts = {
            stream: b"".join(chunks).decode().replace("\r\n", "\n").replace("\r", "\n")
            for stream, chunks in self.streams.items()
        }
        return texts.get(self.stdout), texts[self.stderr]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_servers: dict[tuple, ForkServer] = {}
READ_AT_START = ("OMP_", "MKL_", "PYTHON", "LANG", "LC_")  # by torch while importing, the interpreter at its start


def server(env: dict[str, str], terminal: bool = False) -> ForkServer:
    """The fork server for environment `env` (what the interpreter read at its start and torch while
    importing), started at a terminal if `terminal`, at its first use."""
    read = tuple(sorted((name, value) for name, value in env.items() if name.startswith(READ_AT_START)))
    key = (terminal, read)
    if key not in _servers:
        _servers[key] = ForkServer(env, terminal)
        atexit.register(_servers[key].close)
    return _servers[key]


def hung_up(code: str, argv: list[str], ready: Callable[[bytes], bool], timeout: float = 60) -> tuple[int, bytes]:
    """`code` forked as `start` forks it, at a terminal of 24 rows of 100 columns (its stdin, stdout and stderr;
    its session's leader, that its controlling terminal), closed once `ready` says yes to what the terminal
    shows so far: the kernel hangs its session up (SIGHUP) and its writes there fail (EIO), as when a user
    closes a terminal window or an ssh session drops. Its exit status and what the terminal showed."""
    terminal, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = dict(os.environ)
    forks = server(env, terminal=True)
    pid = forks.fork(code, argv, env, [os.dup(child), os.dup(child), child], terminal=True)
    try:
        screen, deadline = b"", time.monotonic() + timeout
        while not ready(screen):
            assert time.monotonic() < deadline, screen
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    screen += os.read(terminal, 1 << 16)
                except OSError:  # EIO: it ended, closing the terminal
                    raise AssertionError(f"ended before it was hung up: {screen!r}") from None
        os.close(terminal)
        status = forks.exit_status(pid, timeout=timeout)
    finally:
        if forks.exit_status(pid, timeout=0) is None:
            os.kill(pid, signal.SIGKILL)
    assert status is not None, f"still running {timeout} s after its terminal was closed"
    return status, screen
