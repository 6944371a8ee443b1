"""Processes that start without importing torch: each is forked from a server process that imported
torch, its distributed package and charlm once, as Python's multiprocessing "forkserver" does. A rank of
a test's job then starts in milliseconds instead of the ~3 s of CPU a fresh `python -c` spends importing
(torch, and torch._dynamo that DDP and AdamW import), of the 2 cores both ranks share.

Each is still a process of its own, run as `python -c CODE ARGS` runs: its own argv, environment, folder,
standard streams (pipes to this process) and pid, signals sent to it by that pid, atexit handlers and
exit status as that command's. What the server has imported is the difference: environment variables
read while importing torch (OMP_NUM_THREADS) are the server's, which is started with the ranks' own.

The server ends when the tests' process closes its socket, at their end or killed (SIGKILL, the OOM
killer, a CI timeout), and kills the children still running: a `charlm serve` a killed test run
started does not serve on for ever, with parent pid 1."""

from __future__ import annotations

import atexit
import io
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

# The server: imports, then forks a child per request on its socket and reports each child's exit.
SERVER = r"""
import os, pickle, select, signal, socket, sys
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
    code, argv, env, cwd = pickle.loads(message)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: `python -c code argv...` from here on, with its streams, folder and environment
        channel.close()
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
            os.close(fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
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
    """The server process, started with `env`; `start` forks a child of it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env
        )
        theirs.close()
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.ended: dict[int, int] = {}

    def start(self, code: str, argv: list[str], env: dict[str, str], stdin: bool = False) -> Forked:
        """`code` run as `python -c` runs it, with `argv` as sys.argv and `env` as its environment, in this
        folder, its stdout and stderr piped here; its stdin too if `stdin`, else /dev/null."""
        in_read, in_write = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), None)
        (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
        with self.lock:
            request = pickle.dumps((code, list(argv), env, os.getcwd()))
            socket.send_fds(self.channel, [request], [in_read, out_write, err_write])
            for fd in (in_read, out_write, err_write):
                os.close(fd)
            deadline = time.monotonic() + 60
            while not self.started:
                assert time.monotonic() < deadline, "the fork server started no process in 60 s"
                self.receive(timeout=1)
            pid = self.started.pop()
        return Forked(self, pid, out_read, err_read, in_write)

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


class Forked:
    """A child of the fork server, read as a subprocess.Popen with its stdout and stderr piped is: pid,
    returncode, stdout and stderr (unbuffered binary files, so that a `readline` takes no more than its
    line), stdin (one, or None), poll, wait, communicate (text), send_signal, terminate, kill."""

    def __init__(self, server: ForkServer, pid: int, stdout: int, stderr: int, stdin: int | None = None) -> None:
        self.server, self.pid, self.returncode = server, pid, None
        self.stdout, self.stderr = io.FileIO(stdout), io.FileIO(stderr)
        self.stdin = None if stdin is None else io.FileIO(stdin, "w")
        self.streams = {self.stdout: [], self.stderr: []}  # what `communicate` has read of each

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
        texts = (b"".join(chunks).decode() for chunks in self.streams.values())  # as Popen's text=True reads them:
        return tuple(text.replace("\r\n", "\n").replace("\r", "\n") for text in texts)  # universal newlines

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_servers: dict[tuple, ForkServer] = {}


def server(env: dict[str, str]) -> ForkServer:
    """The fork server for environment `env` (what torch read while importing), started at its first use."""
    key = tuple(sorted((name, value) for name, value in env.items() if name.startswith(("OMP_", "MKL_", "PYTHON"))))
    if key not in _servers:
        _servers[key] = ForkServer(env)
        atexit.register(_servers[key].close)
    return _servers[key]
