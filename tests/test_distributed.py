"""Data parallelism on the CPU: two gloo processes, started as torchrun starts them, train the model one process trains
with the same global batch; devices and precision fail clearly where they cannot work."""

import contextlib
import itertools
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import charlm
from charlm import distributed, runs, sizing, threads
from charlm.distributed import SYNC_EVERY
from charlm.errors import CharLMError
from charlm.runs import read_metrics

from . import forkserver
from .conftest import TINY, assert_one_line_error, cli, cli_args, latest, max_weight_difference, wait_for

pytestmark = pytest.mark.slow  # every test starts processes under torchrun

# dropout 0: the only randomness; a flat learning rate after warm-up, so a run resumed with a
# larger --max-steps follows the same schedule as one that ran through.
OPTIONS = {
    **{name: value for name, value in TINY.items() if name != "max_steps"},
    "layers": 2,
    "eval_every": 5,
    "dropout": 0.0,
    "min_lr_ratio": 1.0,
}
WEIGHT_TOLERANCE = 1e-5
BPC_TOLERANCE = 1e-5


MAIN = "from charlm.__main__ import main\nmain()"  # `python -m charlm`, after a prelude


def cli_options(**changes) -> list[str]:
    return cli_args({**OPTIONS, **changes})


# `python -m torch.distributed.run`, as `code` for `ForkServer.start`
TORCHRUN = "import runpy\nrunpy.run_module('torch.distributed.run', run_name='__main__', alter_sys=True)"

# A rank as torchrun starts it (`python -c STAND_IN CODE ARGS`), standing in for `python -c CODE ARGS` forked
# from the fork server (`forked_ranks`): its command, environment, folder and standard streams are handed to the
# forked process, each signal torchrun sends is passed on to it, and the stand-in exits as it exited.
STAND_IN = r"""
import os, pickle, signal, socket, sys
relay = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
relay.connect("\0" + os.environ["CHARLM_TEST_RANK_RELAY"])
command = (sys.argv[1], ["-c", *sys.argv[2:]], dict(os.environ), os.getcwd())
socket.send_fds(relay, [pickle.dumps(command)], [0, 1, 2])
pid = pickle.loads(relay.recv(4096))
def pass_on(signum, frame):
    try:
        os.kill(pid, signum)
    except OSError:
        pass
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, pass_on)
status = pickle.loads(relay.recv(4096))
if status < 0:
    signal.signal(-status, signal.SIG_DFL)
    os.kill(os.getpid(), -status)
sys.exit(status % 256)
"""
relays = itertools.count()


@contextlib.contextmanager
def forked_ranks(env: dict[str, str], processes: int) -> Iterator[dict[str, str]]:
    """The environment under which torchrun's STAND_IN ranks reach this process, which forks each rank from
    the fork server (torch imported: ~4 s of CPU less a rank, of the 2 cores both share) and tells its
    stand-in the rank's pid and exit status; a rank whose stand-in is gone (torchrun's SIGKILL) is killed.
    For the tests of what torchrun shows of its ranks, not of its process tree (their parent is the server)."""
    name = f"charlm-test-ranks-{os.getpid()}-{next(relays)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(f"\0{name}")
    listener.listen()
    listener.settimeout(0.1)
    server, over, relaying = forkserver.server(env), threading.Event(), []

    def relay(connection: socket.socket) -> None:
        with connection:
            message, streams, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            if not message:  # its stand-in ended before it asked (torchrun stopped it)
                return
            code, argv, rank_env, cwd = pickle.loads(message)
            pid = server.fork(code, argv, rank_env, streams, cwd)
            connection.sendall(pickle.dumps(pid))
            status = None
            while status is None:
                status = server.exit_status(pid, timeout=0.05)
                if status is None and (over.is_set() or select.select([connection], [], [], 0)[0]):
                    os.kill(pid, signal.SIGKILL)  # its stand-in is gone: the rank goes with it
            with contextlib.suppress(OSError):
                connection.sendall(pickle.dumps(status))

    def accept() -> None:
        while len(relaying) < processes and not over.is_set():
            with contextlib.suppress(TimeoutError):
                relaying.append(threading.Thread(target=relay, args=(listener.accept()[0],)))
                relaying[-1].start()

    accepting = threading.Thread(target=accept)
    accepting.start()
    try:
        yield {**env, "CHARLM_TEST_RANK_RELAY": name}
    finally:
        over.set()
        accepting.join()
        listener.close()
        for thread in relaying:
            thread.join()


def launch(*args: str, processes: int = 2, prelude: str = "", env: dict[str, str] | None = None) -> forkserver.Forked:
    """`torchrun --nproc_per_node N -m charlm ARGS` started, with one thread per process (2 cores here).
    torchrun itself is forked from a process that has imported torch (`forkserver`: ~2 s of CPU less a
    launch); the ranks are the processes it starts. `prelude`: Python each rank runs first, as `ranks`
    takes it. `env`: `forked_ranks`' environment, for ranks that stand in for forked ones."""
    env = env or {**os.environ, "OMP_NUM_THREADS": "1"}
    code = f"{prelude}\n{MAIN}" if prelude else forkserver.CHARLM
    if "CHARLM_TEST_RANK_RELAY" in env:
        charlm = ["--no-python", sys.executable, "-c", STAND_IN, code]
    else:
        charlm = ["--no-python", sys.executable, "-c", code] if prelude else ["-m", "charlm"]
    # --log-dir: torchrun's elastic agent otherwise makes a /tmp/torchelastic_* it never removes (one a launch)
    logs = ["--log-dir", str(Path("torchrun-logs").resolve())]  # in the test's own folder (conftest.in_tmp)
    command = ["-m", "--standalone", "--nproc_per_node", str(processes), *logs, *charlm, *args]
    return forkserver.server(env).start(TORCHRUN, command, env)


@contextlib.contextmanager
def torchrun(*args: str, processes: int = 2, prelude: str = "") -> Iterator[forkserver.Forked]:
    """`launch`, its ranks forked (`forked_ranks`); any process still running is killed after."""
    with forked_ranks({**os.environ, "OMP_NUM_THREADS": "1"}, processes) as env:
        launcher = launch(*args, processes=processes, prelude=prelude, env=env)
        try:
            yield launcher
        finally:
            launcher.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def ranks(*args: str, processes: int = 2, prelude: str = "", agent: bool = True):
    """`charlm ARGS` as the ranks of one job, started as torchrun starts them (its environment) but
    without it, so each rank's exit status and output can be read; any still running are killed after.
    Each rank is a process forked from one that has imported torch (`forkserver`): ~3 s of CPU less a rank.
    `prelude`: Python each rank runs first, to watch or steer it from inside (its RANK is in os.environ).
    As torchrun's agent does, this process keeps the store the ranks meet through, which outlives them;
    `agent=False`: rank 0 keeps it, as where each rank is started by hand (MASTER_ADDR, RANK, WORLD_SIZE)."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False) if agent else None
    port = store.port if store else free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if agent:
        env |= {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "0"}
    env["LOCAL_WORLD_SIZE"] = str(processes)  # each rank's share of the cores (threads.configure)
    server = forkserver.server(env)
    started = [
        server.start(
            f"{prelude}\n{MAIN}",
            ["-c", *args],
            {**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes)},
        )
        for rank in range(processes)
    ]
    try:
        yield started
    finally:
        for process in started:
            process.kill()
            process.communicate()


def train_ranks(*args: str, processes: int = 2) -> None:
    """`charlm ARGS` as the ranks of one job (`ranks`), which must all succeed: the job torchrun would run,
    without the ~2 s its launcher spends importing torch (the tests of torchrun itself use `launch`)."""
    with ranks(*args, processes=processes) as started:
        outputs = [process.communicate(timeout=120) for process in started]
    assert [process.returncode for process in started] == [0] * processes, outputs


def curve(run: str) -> list[tuple[int, float, float]]:
    rows = read_metrics(runs.CHECKPOINT_ROOT / run)
    return [(row["step"], row["train_bpc"], row["val_bpc"]) for row in rows if row["val_bpc"] is not None]


def assert_same_curve(a: str, b: str) -> float:
    first, second = curve(a), curve(b)
    assert [row[0] for row in first] == [row[0] for row in second] and len(first) >= 4
    difference = max(abs(x - y) for p, q in zip(first, second) for x, y in zip(p[1:], q[1:]))
    assert difference < BPC_TOLERANCE, (first, second)
    return difference


def test_two_gloo_processes_train_the_model_one_process_trains(fox_file):
    torch.set_num_threads(1)
    train_ranks("train", str(fox_file), "--out", "ddp", *cli_options(max_steps=20))
    charlm.train(fox_file, out="one", **OPTIONS, max_steps=20)
    weights = max_weight_difference("ddp", "one")
    assert_same_curve("ddp", "one")
    assert weights < WEIGHT_TOLERANCE
    saved, one = latest("ddp"), latest("one")
    assert saved.training.hidden[0].shape == (2, 4, 32)  # every rank's streams, in the single-process layout
    assert saved.progress.chars == one.progress.chars
    assert (saved.training.position, saved.training.epoch) == (one.training.position, one.training.epoch)
    assert saved.training.rank_rngs.shape[0] == 2
    # charlm info tells a torchrun run, whose dropout continues exactly only under as many processes
    assert f" x 2 processes on {saved.cores} cores\n" in cli("info", "ddp").output  # as a resume's row says it
    assert " processes\n" not in cli("info", "one").output

    # The DDP checkpoint resumes in one process, and the one-process checkpoint under two processes:
    # both continue exactly as an uninterrupted one-process run.
    charlm.train(fox_file, out="through", **OPTIONS, max_steps=40)
    charlm.train(resume="ddp", max_steps=40)
    train_ranks("train", "--resume", "one", "--max-steps", "40")
    resumed = max(max_weight_difference("ddp", "through"), max_weight_difference("one", "through"))
    assert resumed < WEIGHT_TOLERANCE


def test_with_dropout_a_resume_under_the_same_world_size_continues_exactly(fox_file):
    """Each rank draws its own dropout masks; its generator state is saved, so two processes resumed
    by two processes give the weights of two processes that never stopped."""
    options = cli_options(dropout=0.3)
    train_ranks("train", str(fox_file), "--out", "through", *options, "--max-steps", "30")
    train_ranks("train", str(fox_file), "--out", "cut", *options, "--max-steps", "15")
    train_ranks("train", "--resume", "cut", "--max-steps", "30")
    assert latest("cut").progress.step == latest("through").progress.step == 30
    assert max_weight_difference("cut", "through") == 0.0
    charlm.train(fox_file, out="one", **{**OPTIONS, "dropout": 0.3}, max_steps=30)
    assert max_weight_difference("one", "through") > 1e-4  # dropout really drew different masks per rank


def test_a_world_size_that_does_not_divide_the_batch_is_one_line(fox_file, monkeypatch):
    """Said before the processes meet: here rank 0 of 3 in this process, which no other rank joins."""
    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    result = cli("train", str(fox_file), *cli_options(max_steps=5))
    assert_one_line_error(result, "--batch-size 4 does not split over 3 processes")


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        ({"RANK": "1"}, "process 1 of 2: MASTER_ADDR, MASTER_PORT not set; a rank started without torchrun needs"),
        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, "process ? of 2: RANK not set; "),
        ({"RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, "process 2 of 2: RANK must be 0 to 1"),
    ],
    ids=["no address", "no rank", "rank past the world"],
)
def test_a_rank_started_by_hand_without_what_it_needs_names_itself_in_one_line(
    fox_file, monkeypatch, environment, said
):
    """Ranks started without torchrun (by hand, another launcher): a missing MASTER_ADDR, MASTER_PORT or RANK
    was torch's ValueError traceback naming no rank, and RANK 2 of 2 waited --peer-timeout to say it had
    'lost the others'. One line names the rank at once and says what to set."""
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"WORLD_SIZE": "2", **environment}.items():
        monkeypatch.setenv(name, value)
    result = cli("train", str(fox_file), *cli_options(max_steps=5), "--peer-timeout", "30s")
    assert_one_line_error(result, said)


def test_a_signal_stops_every_rank_at_one_step_and_the_ranks_leave_together(fox_file):
    """torchrun passes Ctrl-C / SIGTERM on to every rank: rank 0 saves the step they stop at (before it
    scores it, and again after) and says how to resume, and every rank exits with the signal's status, none
    before the others (rank 0 used to exit at once and rank 1 died with a traceback at its last barrier:
    'Connection closed by peer')."""
    with ranks("train", str(fox_file), "--out", "cut", *cli_options(max_steps=100_000)) as processes:
        wait_for(runs.CHECKPOINT_ROOT / "cut" / runs.LATEST)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        (out, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [128 + signal.SIGTERM] * 2, err + peer_err
    step = latest("cut").progress.step
    assert f"stopped at step {step}; checkpoints/cut holds step {step}: resume with charlm train --resume" in out
    assert "Traceback" not in err + peer_err, err + peer_err


def test_a_signal_to_one_rank_alone_stops_every_rank_at_one_step(fox_file):
    """SIGTERM to one rank other than 0 (`kill PID` of one process) was not answered: every rank took rank
    0's stop request alone, and the job trained on to its limit (1 of 12 ranks signalled at random in a
    job's first seconds). A signal to any rank stops every rank at one step: rank 0 saves and says how to
    resume, and every rank exits with the signal's status."""
    with ranks("train", str(fox_file), "--out", "cut", *cli_options(max_steps=100_000)) as processes:
        wait_for(runs.CHECKPOINT_ROOT / "cut" / runs.LATEST)
        processes[1].send_signal(signal.SIGTERM)
        (out, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [128 + signal.SIGTERM] * 2, err + peer_err
    step = latest("cut").progress.step
    assert f"stopped at step {step}; checkpoints/cut holds step {step}: resume with" in out
    assert "Traceback" not in err + peer_err


# Rank 1 alone is sent SIGTERM as the run's last step, off its --eval-every, is scored.
RANK_1_SIGNALLED_AS_THE_LAST_STEP_SCORES = """
import os, signal
from charlm import trainer
evaluate = trainer.Trainer.evaluate_and_save
def signalled(self, on_cadence=True):
    if not on_cadence and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    evaluate(self, on_cadence)
trainer.Trainer.evaluate_and_save = signalled
"""


def test_a_signal_to_one_rank_as_the_last_step_scores_stops_every_rank(fox_file):
    """SIGTERM to rank 1 alone as the last step (13, off --eval-every 5) was scored stopped rank 1 alone (143)
    while rank 0 said done and exited 0: each read its own flag there. Every rank stops, as at any other step."""
    prelude = RANK_1_SIGNALLED_AS_THE_LAST_STEP_SCORES
    with ranks("train", str(fox_file), "--out", "cut", *cli_options(max_steps=13), prelude=prelude) as processes:
        (out, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [128 + signal.SIGTERM] * 2, out + err + peer_err
    assert out.splitlines()[-1].startswith("stopped at step 13; checkpoints/cut holds step 13, the run's last"), out


# Rank 0 alone is sent SIGTERM as it scores step 10, on its --eval-every, mid-run.
RANK_0_SIGNALLED_AS_AN_EVALUATION_SCORES = """
import os, signal
from charlm import trainer
score = trainer.bits_per_char
def signalled(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return score(*args, **kwargs)
trainer.bits_per_char = signalled
"""


def test_a_signal_to_rank_0_as_an_evaluation_scores_stops_every_rank_at_that_step(fox_file):
    """A stop rank 0 hears as it scores an evaluation (said then) stops the run at that step: every rank asks
    after it, as it does after the last step's scoring, none trains on alone."""
    prelude = RANK_0_SIGNALLED_AS_AN_EVALUATION_SCORES
    options = cli_options(max_steps=1000, eval_every=10)
    with ranks("train", str(fox_file), "--out", "cut", *options, prelude=prelude) as processes:
        (out, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [128 + signal.SIGTERM] * 2, out + err + peer_err
    assert out.splitlines()[-1].startswith("stopped at step 10; checkpoints/cut holds step 10: resume with"), out
    assert latest("cut").progress.step == 10


# For a job where one rank cannot post (killed, stopped): the survivor waits GRACE for its post before it
# names it, 5 s in the product; the test's ranks wait 1 s of it (4 s less a test, the same roll call).
SHORT_GRACE = "from charlm import distributed\ndistributed.GRACE = 1.0"


# A rank that leaves an error to rank 0 waits QUIET_GRACE (2 s) before it exits, so that torchrun, which stops
# every rank once one exits, leaves rank 0 time to say it; `ranks` stops none: the test's quiet ranks wait 0.1 s.
SHORT_QUIET_GRACE = "from charlm import distributed, launcher\nlauncher.QUIET_GRACE = distributed.QUIET_GRACE = 0.1"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def test_a_rank_killed_stops_the_others_with_one_line(fox_file):
    """A rank that dies (SIGKILL, out of memory) does not hang the others or bury them in a gloo traceback:
    one line names it and says how to resume, at once: the survivor waited GRACE (5 s) for the dead rank
    to answer its roll call, which the pid it posted shows it never will (`fate`)."""
    options = cli_options(max_steps=100_000)
    with ranks("train", str(fox_file), "--out", "cut", *options) as (leader, peer):
        wait_for(runs.CHECKPOINT_ROOT / "cut" / runs.LATEST)
        killed = time.monotonic()
        peer.kill()
        _, err = leader.communicate(timeout=60)
        took = time.monotonic() - killed
    assert leader.returncode == 1
    assert took < distributed.GRACE / 2, f"named {took:.1f}s after the kill"
    line = one_line(err)
    assert f"process 1 (pid {peer.pid} on " in line and " of 2 ended without a word (killed" in line
    assert line.endswith(f"charlm train --resume {runs.CHECKPOINT_ROOT / 'cut'}")


@pytest.mark.parametrize("stopped", [1, 0])
def test_a_rank_that_stops_answering_is_named_after_the_peer_timeout_and_the_run_resumes(fox_file, stopped):
    """A rank stuck or stopped (SIGSTOP) without dying held the others for torch's 30-minute collective
    timeout, saying nothing. After --peer-timeout the lowest rank still answering names it, with its pid,
    and the command that resumes the run from its last checkpoint, which is whole."""
    options = [*cli_options(max_steps=100_000), "--peer-timeout", "2s"]
    with ranks("train", str(fox_file), "--out", "cut", *options, prelude=SHORT_GRACE) as processes:
        wait_for(runs.CHECKPOINT_ROOT / "cut" / runs.LATEST)
        processes[stopped].send_signal(signal.SIGSTOP)
        survivor = processes[1 - stopped]
        _, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 1
    line = one_line(err)
    assert f"process {stopped} (pid {processes[stopped].pid} on " in line
    assert " of 2 stopped answering for 2s (--peer-timeout)" in line
    run_dir = runs.CHECKPOINT_ROOT / "cut"
    assert line.endswith(f"; {run_dir} holds its last checkpoint: resume with charlm train --resume {run_dir}")
    step = latest("cut").progress.step
    charlm.train(resume="cut", max_steps=step + 5)
    assert latest("cut").progress.step == step + 5


# Rank {rank} does `action` once its training is over, the run saved: rank 0 before its last lines.
RANK_ENDS_AFTER_TRAINING = """
import os, signal
from charlm import trainer
fit = trainer.Trainer.fit
def fit_then_end(self):
    result = fit(self)
    if os.environ["RANK"] == "{rank}":
        {action}
    return result
trainer.Trainer.fit = fit_then_end
"""


def test_a_rank_stopped_after_the_run_finished_keeps_no_one_waiting(fox_file):
    """Rank 1 stopped (SIGSTOP) once the run was finished and saved held rank 0 in the ranks' last barrier
    for --peer-timeout (5 minutes by default), and then rank 0 said to resume a run that had nothing left
    to train. Rank 0 says its last lines and exits 0 at once."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "60s"]
    prelude = RANK_ENDS_AFTER_TRAINING.format(rank=1, action="os.kill(os.getpid(), signal.SIGSTOP)")
    with ranks("train", str(fox_file), "--out", "done", *options, prelude=prelude) as (leader, _):
        out, err = leader.communicate(timeout=30)  # not the 60 s of --peer-timeout
    assert leader.returncode == 0, err
    assert out.startswith("done: step 5,") and latest("done").progress.step == 5


def test_rank_0_killed_after_the_run_finished_is_named_at_once_and_the_run_is_said_finished(fox_file):
    """Rank 0 killed after the final checkpoint, before its last lines: rank 1 said to resume a run that
    had nothing left to train. It names rank 0, and says the run had finished and where it is saved."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "60s"]
    prelude = SHORT_GRACE + RANK_ENDS_AFTER_TRAINING.format(rank=0, action="os.kill(os.getpid(), signal.SIGKILL)")
    with ranks("train", str(fox_file), "--out", "done", *options, prelude=prelude) as (leader, peer):
        _, err = peer.communicate(timeout=30)
    assert peer.returncode == 1
    line = one_line(err)
    assert line.startswith(f"Error: process 0 (pid {leader.pid} on ") and " of 2 ended without a word" in line
    assert line.endswith(f"; the run had finished: saved in {runs.CHECKPOINT_ROOT / 'done'}")
    assert latest("done").progress.step == 5


# A rank dies as it calls torch.distributed's `call`, as the ranks connect.
RANK_DIES_AT = """
import os, torch.distributed as dist
def die(*args, **kwargs):
    os._exit(9)
if os.environ["RANK"] == "{rank}":
    dist.{call} = die
"""
# Rank 1 dies as the ranks start to connect: rank 0's process group waits for it, --peer-timeout long.
RANK_1_DIES_CONNECTING = RANK_DIES_AT.format(rank=1, call="init_process_group")


def test_a_peer_lost_while_the_ranks_connect_is_one_line_saying_to_run_it_again(fox_file):
    """A peer gone before the process group was made: the other rank printed torch's traceback
    (DistStoreError: wait timeout ... from ProcessGroupGloo; a peer dying mid-connection gives gloo's
    connectFullMesh error) rather than the one line a peer lost later gets, naming the peer."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "2s"]
    prelude = SHORT_GRACE + RANK_1_DIES_CONNECTING
    with ranks("train", str(fox_file), "--out", "never", *options, prelude=prelude) as (leader, peer):
        _, err = leader.communicate(timeout=120)
    assert leader.returncode == 1 and peer.returncode == 9
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # after torch's own warnings of its store's wait
    assert last.startswith(f"Error: process 1 (pid {peer.pid} on ") and " of 2 ended without a word" in last, err
    assert last.endswith("; the processes had not met yet, so nothing was read or written: run the same command again")
    assert not (runs.CHECKPOINT_ROOT / "never").exists()


def test_rank_0_lost_before_ranks_started_without_torchrun_s_agent_meet_is_said_after_the_peer_timeout(fox_file):
    """Ranks started by hand, one a machine (rank 0 keeps the store): rank 0 gone before rank 1 reached its store
    held rank 1 about twice --peer-timeout (torch's store client tries its connection twice: 23 s under
    --peer-timeout 10s), then said torch's socket timeout. It says the --peer-timeout it waited."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "2s"]
    prelude = RANK_DIES_AT.format(rank=0, call="init_process_group")
    with ranks("train", str(fox_file), "--out", "never", *options, prelude=prelude, agent=False) as (leader, peer):
        _, err = peer.communicate(timeout=60)
        leader.wait(timeout=60)
    assert leader.returncode == 9 and peer.returncode == 1, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (  # after torch's own lines of its store client's tries
        "Error: process 1 of 2 lost the others (no answer while connecting: timed out after 2s (--peer-timeout)): "
        f"one stopped first, and its own message or torchrun's summary says why{distributed.SETUP_NOTE}"
    )
    assert not (runs.CHECKPOINT_ROOT / "never").exists()


def test_a_peer_lost_as_the_setup_group_connects_is_named_after_the_peer_timeout(fox_file):
    """A rank dead as the others made the setup group (new_group, whose SETUP_TIMEOUT gives rank 0 30
    minutes to prepare a corpus) held them those 30 minutes. They name it after --peer-timeout."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "1s"]
    prelude = SHORT_GRACE + RANK_DIES_AT.format(rank=1, call="new_group")
    with ranks("train", str(fox_file), "--out", "never", *options, prelude=prelude) as (leader, peer):
        _, err = leader.communicate(timeout=20)  # not 30 minutes
    assert leader.returncode == 1 and peer.returncode == 9
    line = one_line(err)
    assert line.startswith(f"Error: process 1 (pid {peer.pid} on ") and " of 2 ended without a word" in line
    assert line.endswith(distributed.SETUP_NOTE)


@pytest.mark.parametrize(
    ("fate", "says"),
    [
        ("killed", "ended without a word (killed, or out of memory"),
        ("killed, not yet reaped", "ended without a word (killed, or out of memory"),
        ("stopped", "stopped answering for 3s (--peer-timeout): stopped (SIGSTOP); torchrun ends the job"),
        ("running", "stopped answering for 3s (--peer-timeout): stuck; torchrun ends the job"),
    ],
)
def test_a_silent_rank_on_this_machine_is_said_dead_stopped_or_stuck_as_its_process_is(monkeypatch, fate, says):
    """A rank SIGKILLed as the ranks connected was said to have "stopped answering (stuck, or stopped with
    SIGSTOP)" where the survivor's wait timed out rather than saw its connection close (1 of 5 rounds):
    the pid it posted tells, on the same machine, a process that ended from one stopped or stuck."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    monkeypatch.setattr(distributed, "_job_store", store)
    monkeypatch.setattr(distributed, "GRACE", 0.2)  # rank 0 never posts: the roll call waits this long
    silent = subprocess.Popen(["sleep", "60"])
    try:
        if fate.startswith("killed"):
            silent.kill()
            if fate == "killed":
                silent.wait()
        elif fate == "stopped":
            silent.send_signal(signal.SIGSTOP)
        wanted = {"killed, not yet reaped": "Z", "stopped": "T"}.get(fate)
        while wanted and process_state(silent.pid) != wanted:
            time.sleep(0.01)
        store.set(distributed.STORE_KEY.format(kind="pid", rank=0), f"pid {silent.pid} on {socket.gethostname()}")
        timed_out = RuntimeError("[pair.cc:534] Timed out waiting 3000ms for recv operation to complete")
        error = distributed.Ranks(rank=1, world=2).after_lost(timed_out, 3.0)
    finally:
        silent.kill()
        silent.wait()
    assert str(error) == f"process 0 (pid {silent.pid} on {socket.gethostname()}) of 2 {says}" + (
        ": torchrun's summary says how); start the run again" if "ended" in says else "; start the run again"
    )


class PostedStore:
    """The store calls `Ranks.await_leader` makes, on a dict another thread posts to (rank 0's part)."""

    def __init__(self) -> None:
        self.posted: dict[str, bytes] = {}

    def check(self, keys: list[str]) -> bool:
        return all(key in self.posted for key in keys)

    def get(self, key: str) -> bytes:
        return self.posted[key]

    def post(self, kind: str, value: str) -> None:
        self.posted[distributed.STORE_KEY.format(kind=kind, rank=0)] = value.encode()


def test_a_waiting_rank_leaves_a_short_leader_first_block_as_rank_0_ends_it(monkeypatch):
    """A rank waiting for rank 0's evaluation looked at the store every 0.1 s, so every --eval-every
    steps cost the waiting ranks up to 0.1 s more than the evaluation itself: it looks again after 1 ms,
    then twice as long each time. The heartbeat still bounds the wait: a silent rank 0 is named."""
    store = PostedStore()
    monkeypatch.setattr(distributed, "_job_store", store)
    waiting = distributed.Ranks(rank=1, world=2)
    posted = []

    def end_block() -> None:
        time.sleep(0.005)  # a short evaluation
        posted.append(time.monotonic())
        store.post("done", "1")

    rank_0 = threading.Thread(target=end_block)
    rank_0.start()
    waiting.await_leader(1)
    left = time.monotonic()
    rank_0.join()
    assert left - posted[0] < 0.03, f"left {left - posted[0]:.3f}s after rank 0 posted done"
    monkeypatch.setattr(distributed, "_peer_timeout", 0.05)
    store.post("beat", "0")  # one beat, then none: rank 0 stuck in block 2
    started = time.monotonic()
    with pytest.raises(distributed.PeerLost, match="no heartbeat from process 0"):
        waiting.await_leader(2)
    assert time.monotonic() - started < 1


# What torch's ProcessGroupGloo raises when a peer's connection closes as the full mesh is made
# (torch/csrc/distributed/c10d/ProcessGroupGloo.cpp: "Gloo connectFullMesh failed with " + gloo's error).
CONNECT_FULL_MESH = (
    "Gloo connectFullMesh failed with [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:144] "
    "Connection closed by peer [127.0.0.1]:41234"
)


def test_a_peer_lost_as_the_setup_group_connects_is_one_line_and_other_errors_are_left_alone(monkeypatch):
    """A peer dying right before new_group leaves the others waiting the setup group's 30 minutes, too
    long to provoke here: gloo's error as torch raises it, from new_group, is the same one line; the
    process group is destroyed; an error of another kind is not taken for a lost peer."""
    destroyed = []
    for name, value in {"RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)  # what a rank is started with (`Ranks.check_reachable`)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: destroyed.append(True))
    for raised in (RuntimeError(CONNECT_FULL_MESH), ValueError("not a lost peer")):

        def new_group(*args, error=raised, **kwargs):
            raise error

        monkeypatch.setattr(torch.distributed, "new_group", new_group)
        with pytest.raises(Exception) as caught, distributed.Ranks(rank=1, world=2).group(timeout=2.0):
            pass
        if isinstance(raised, ValueError):
            assert caught.value is raised
        else:
            assert type(caught.value) is CharLMError and destroyed == [True]
            assert str(caught.value) == (
                "process 1 of 2 lost the others (Gloo connectFullMesh failed with [/__w/pytorch/pytorch/third_party/"
                "gloo/gloo/transport/tcp/pair.cc:144] Connection closed by peer [127.0.0.1]:41234): one stopped "
                f"first, and its own message or torchrun's summary says why{distributed.SETUP_NOTE}"
            )


# Rank 0 prepares the corpus cache (a new run's or a resumed one's) while the others wait; as it starts,
# it does `action`: sleeps longer than --peer-timeout, stops (SIGSTOP) or dies.
RANK_0_PREPARING = """
import os, signal, time
from charlm import api
def preparing(load):
    def load_after(*args, **kwargs):
        if os.environ["RANK"] == "0":
            {action}
        return load(*args, **kwargs)
    return load_after
api.load_corpus, api.load_run_text = preparing(api.load_corpus), preparing(api.load_run_text)
"""


# Rank 0 scores validation (a long --eval-also text) and writes each checkpoint (a huge model on a slow
# disk) longer than --peer-timeout.
RANK_0_SCORES_AND_WRITES_SLOWLY = """
from charlm import trainer
def slowed(work):
    def slow(*args, **kwargs):
        time.sleep(2.0)
        return work(*args, **kwargs)
    return slow
trainer.bits_per_char, trainer.save = slowed(trainer.bits_per_char), slowed(trainer.save)
"""


def test_the_others_wait_for_rank_0_to_prepare_score_and_save_longer_than_the_peer_timeout(fox_file):
    """Downloading and preparing a corpus may take rank 0 minutes, and so may scoring a long --eval-also text
    or writing a huge model's checkpoint to a slow disk: the others wait while its heartbeat goes on, however
    long, and --peer-timeout bounds only a silence. An evaluation longer than --peer-timeout stopped the job:
    the others, waiting to gather the checkpoint, named rank 0 as stuck; so did a write, the others waiting
    for its outcome."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "1.5s"]
    prelude = RANK_0_PREPARING.format(action="time.sleep(2.0)") + RANK_0_SCORES_AND_WRITES_SLOWLY
    with ranks("train", str(fox_file), "--out", "slow", *options, prelude=prelude) as processes:
        errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert latest("slow").progress.step == 5


# Rank 0 scores validation 4.0, 3.0, then only worse, on a disk that fills once the run folder holds latest.pt.
SCORES_THEN_DISK_FULL = """
import errno, itertools, pathlib
from charlm import files, trainer
scores = itertools.chain([4.0, 3.0], itertools.repeat(3.5))
trainer.bits_per_char = lambda *args, **kwargs: next(scores)
def no_room(contents, before_rename=None):
    raise OSError(errno.ENOSPC, "No space left on device")
real = files.replace_files
files.replace_files = lambda contents, before_rename=None: (
    no_room if any(pathlib.Path(path).parent.joinpath("latest.pt").exists() for path in contents) else real
)(contents, before_rename)
"""


def test_every_rank_stops_where_patience_runs_out_on_a_save_that_failed(fox_file):
    """--patience is decided before the evaluation's save, so that a failed save (--save-errors warn) says the
    run stops: every rank takes rank 0's word at the same point, and they stop together at step 15."""
    options = [*cli_options(max_steps=100), "--patience", "1", "--save-errors", "warn"]
    with ranks("train", str(fox_file), "--out", "full", *options, prelude=SCORES_THEN_DISK_FULL) as processes:
        outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    warned = [line for line in outputs[0][1].splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and warned[0].endswith("; training goes on (--save-errors warn)"), warned
    assert warned[1].endswith("; the run stops without this step's checkpoint (--save-errors warn)"), warned
    assert "done: step 15, " in outputs[0][0] and latest("full").progress.step == 5, outputs[0]


def test_rank_0_alive_but_stuck_in_a_checkpoint_write_is_named_after_6_peer_timeouts(fox_file):
    """Rank 0 stuck in a write (a hung disk or mount) kept beating its heartbeat, so the others waited for
    it forever. A piece of work rank 0 does alone may take 6 x --peer-timeout (a slow disk's write of a huge
    model passes): past that the others name it stuck and say how to give it more."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "1s"]
    prelude = SHORT_GRACE + RANK_0_PREPARING.format(action="pass") + RANK_0_WRITES_FOREVER
    with ranks("train", str(fox_file), "--out", "hung", *options, prelude=prelude) as (leader, peer):
        _, err = peer.communicate(timeout=30)  # not the 600 s of rank 0's write
    assert peer.returncode == 1
    line = one_line(err)
    assert line.startswith(f"Error: process 0 (pid {leader.pid} on ")
    assert (
        " of 2 worked alone for 6s (6 x --peer-timeout: preparing the corpus, scoring or writing a checkpoint) " in line
    )
    assert line.endswith(
        "where its work is that slow, give a larger --peer-timeout; nothing was saved: train again "
        "(--out checkpoints/hung is still free)"
    ), line


# Rank 0's checkpoint write hangs (a hung disk or mount), the process alive.
RANK_0_WRITES_FOREVER = """
from charlm import trainer
def hung(*args, **kwargs):
    time.sleep(600)
trainer.save = hung
"""


@pytest.mark.parametrize("resuming", [False, True], ids=["new run", "resume"])
def test_rank_0_stopped_as_it_prepares_the_corpus_is_named_after_the_peer_timeout(fox_file, resuming):
    """Rank 0 stopped (SIGSTOP, stuck, or lost without its connection closing) while it prepared the corpus
    held the others in the setup group's barrier for 30 minutes, whatever --peer-timeout said. Once its
    heartbeat has been silent for --peer-timeout, rank 1 names it, and what the run folder holds."""
    if resuming:
        charlm.train(fox_file, out="kept", **OPTIONS, max_steps=5)
        args = ["train", "--resume", "kept", "--max-steps", "10", "--peer-timeout", "2s"]
    else:
        args = ["train", str(fox_file), "--out", "never", *cli_options(max_steps=5), "--peer-timeout", "2s"]
    prelude = SHORT_GRACE + RANK_0_PREPARING.format(action="os.kill(os.getpid(), signal.SIGSTOP)")
    with ranks(*args, prelude=prelude) as (leader, peer):
        _, err = peer.communicate(timeout=30)  # not 30 minutes
    assert peer.returncode == 1
    line = one_line(err)
    assert line.startswith(f"Error: process 0 (pid {leader.pid} on ")
    assert " of 2 stopped answering for 2s (--peer-timeout): stopped (SIGSTOP); torchrun ends the job; " in line
    if resuming:
        run_dir = runs.CHECKPOINT_ROOT / "kept"
        assert line.endswith(f"; {run_dir} holds its last checkpoint: resume with charlm train --resume {run_dir}")
        assert latest("kept").progress.step == 5
    else:
        assert line.endswith("; start the run again") and not (runs.CHECKPOINT_ROOT / "never").exists()


def test_rank_0_dead_as_it_prepares_the_corpus_is_named_at_once(fox_file):
    """Rank 0 gone while it prepared, on this machine: its process tells (`fate`), not a silence of
    --peer-timeout (here a minute)."""
    options = [*cli_options(max_steps=5), "--peer-timeout", "60s"]
    prelude = SHORT_GRACE + RANK_0_PREPARING.format(action="os._exit(9)")
    with ranks("train", str(fox_file), "--out", "never", *options, prelude=prelude) as (leader, peer):
        _, err = peer.communicate(timeout=30)
    assert (leader.returncode, peer.returncode) == (9, 1)
    line = one_line(err)
    assert line.startswith(f"Error: process 0 (pid {leader.pid} on ") and " of 2 ended without a word" in line


def test_a_run_rank_0_refuses_is_said_once_and_every_rank_fails(fox_file):
    """Rank 0 alone plans the run (a taken --out is its check): it says why; the others, waiting for the
    plan, exit 1 without a word (they used to add a line each that they had lost it)."""
    charlm.train(fox_file, out="taken", **OPTIONS, max_steps=5)
    with ranks(
        "train", str(fox_file), "--out", "taken", *cli_options(max_steps=5), prelude=SHORT_QUIET_GRACE
    ) as processes:
        (_, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [1, 1]
    assert "taken already holds a run" in one_line(err)
    assert peer_err == ""


def test_a_warning_every_rank_meets_is_shown_by_rank_0_alone(fox_file):
    """Each rank printed every warning its options gave (here --threads above the cores)."""
    too_many = threads.available_cores() + 1
    options = [*cli_options(max_steps=5), "--threads", str(too_many)]
    with ranks("train", str(fox_file), "--out", "warned", *options) as processes:
        (_, err), (_, peer_err) = (process.communicate(timeout=120) for process in processes)
    assert [process.returncode for process in processes] == [0, 0], err + peer_err
    assert f"warning: --threads {too_many} is more than the" in err
    assert "warning:" not in peer_err, peer_err


def damaged_run(fox_file) -> list[str]:
    """A run whose latest.pt is not a checkpoint; the arguments that resume it."""
    charlm.train(fox_file, out="damaged", **OPTIONS, max_steps=5)
    (runs.CHECKPOINT_ROOT / "damaged" / runs.LATEST).write_bytes(b"not a checkpoint")
    return ["--resume", "damaged", "--max-steps", "10"]


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (lambda fox: ["missing.txt", *cli_options(max_steps=5)], "missing.txt: no such file or folder"),
        (lambda fox: [str(fox), *cli_options(max_steps=5, batch_size=3)], "--batch-size 3 does not split"),
        (lambda fox: [str(fox), "--hidden", "many"], "--hidden: 'many' is not a valid integer"),
        (damaged_run, "damaged/latest.pt: not a charlm checkpoint"),
    ],
    ids=["missing corpus", "bad option value", "bad option type", "damaged checkpoint"],
)
def test_an_error_every_rank_meets_is_said_once_and_last_under_torchrun(fox_file, arguments, said):
    """Every rank met the same bad input and said it: a user with 8 GPUs read the line 8 times among
    torchrun's noise, and torchrun's closing summary pointed at its docs. Now one rank says it, and the
    summary's root cause shows the same line, the last thing printed."""
    with torchrun("train", *arguments(fox_file)) as process:
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert len([line for line in err.splitlines() if said in line and line.startswith("Error: ")]) == 1, err
    root_cause = err[err.index("Root Cause (first observed failure):") :]
    assert said in root_cause.split("traceback : ")[1].splitlines()[0], err
    assert "[rank" not in err, err  # no rank's traceback


@pytest.mark.parametrize(
    ("arguments", "said", "status"),
    [
        (["--hidden", "many"], "--hidden: 'many' is not a valid integer; ", 2),
        (cli_options(max_steps=5, batch_size=3), "--batch-size 3 does not split over 2 processes", 1),
    ],
    ids=["bad option type", "bad option value"],
)
@pytest.mark.parametrize("agent", [False, True], ids=["started by hand", "torchrun's agent"])
def test_a_bad_option_is_said_by_every_rank_started_by_hand_and_by_rank_0_alone_under_torchrun(
    fox_file, arguments, said, status, agent
):
    """A rank other than 0 started by hand, watched in a terminal of its own, exited 1 or 2 without a word on
    a bad option, as under torchrun, whose one terminal shows rank 0's line: its user read nothing. It says
    the line, naming itself; under torchrun's agent rank 0 alone still says it."""
    with ranks("train", str(fox_file), *arguments, agent=agent, prelude=SHORT_QUIET_GRACE) as processes:
        (_, err), (_, peer_err) = (process.communicate(timeout=60) for process in processes)
    assert [process.returncode for process in processes] == [status] * 2, err + peer_err
    assert one_line(err).startswith(f"Error: {said}")
    if agent:
        assert peer_err == ""
    else:
        assert one_line(peer_err).startswith(f"Error: process 1 of 2: {said}")


# Rank 0 starts late, as a loaded machine may start it: the other rank meets the bad option first.
LATE_FIRST_RANK = 'import os, time\nif os.environ.get("RANK") == "0":\n    time.sleep(0.5)'


def test_a_rank_that_stays_quiet_leaves_rank_0_time_to_say_the_error():
    """A quiet rank exited at once on a bad option, and torchrun stops the other ranks as soon as one
    exits: rank 0, a moment behind on a loaded machine, was killed before it said the error, and the
    user read nothing but torchrun's summary (seen once in a suite run). A quiet rank now waits a
    moment (launcher.QUIET_GRACE) before it exits."""
    with torchrun("train", "tiny.txt", "--hidden", "many", prelude=LATE_FIRST_RANK) as process:
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert len([line for line in err.splitlines() if line.startswith("Error: --hidden: 'many' is not")]) == 1, err


# Each rank notes the training steps it takes until its plan is made (DDP's or not) and then the plan.
WATCH_THE_PLAN = """
import os, pickle
from torch.nn.parallel import DistributedDataParallel
from charlm import plan, train_state
steps, step, make_plan = [], train_state.train_step, plan.plan
def watched_step(state, spent):
    steps.append(isinstance(state.net, DistributedDataParallel))
    return step(state, spent)
def watched_plan(*args, **kwargs):
    planned = make_plan(*args, **kwargs)
    with open(f"plan-{os.environ['RANK']}.pickle", "wb") as file:
        pickle.dump((list(steps), planned), file)
    return planned
train_state.train_step, plan.plan = watched_step, watched_plan
"""


def test_the_size_probe_times_every_rank_training_together_and_every_rank_gets_one_plan(fox_file):
    """The probe used to time rank 0 alone, one process's share of the streams without the gradient
    exchange, and call the job `world` times as fast: on 2 cores it planned 38,900 chars/s for a job
    that trained at 21,200. Now every rank takes the same probe steps, each a DDP step (the all-reduce
    in it), and the plan says it was measured that way."""
    unsized = {name: value for name, value in OPTIONS.items() if name != "hidden"}
    options = cli_args({**unsized, "max_time": "60s", "max_steps": 5})  # the probe runs; training is 5 steps
    with ranks("train", str(fox_file), "--out", "probed", *options, prelude=WATCH_THE_PLAN) as processes:
        errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    (leader_steps, leader_plan), (peer_steps, peer_plan) = (
        pickle.loads(Path(f"plan-{rank}.pickle").read_bytes()) for rank in (0, 1)
    )
    assert leader_plan == peer_plan and leader_plan.probed_chars_per_second
    assert len(leader_steps) == len(peer_steps) > sizing.PROBE_WARMUP  # the ranks probed together
    assert all(leader_steps) and all(peer_steps)  # each probe step exchanged gradients as training does
    assert "; measured with 2 processes training together: " in leader_plan.reasons["hidden"]


# Rank 1 looks for "the most recent run" after another run was saved: it would find that one.
RANK_1_LOOKS_LATER = """
import os
from pathlib import Path
from charlm import runs
if os.environ["RANK"] == "1":
    runs.latest_run = lambda root=runs.CHECKPOINT_ROOT: Path(root) / "older"
"""


def test_a_resume_of_the_most_recent_run_resumes_the_run_rank_0_found_on_every_rank(fox_file):
    """Each rank used to look for the most recent run on its own: a run saved between their looks made
    them resume different runs (here of different sizes: DDP then refused the mix)."""
    charlm.train(fox_file, out="older", **{**OPTIONS, "hidden": 16}, max_steps=5)
    charlm.train(fox_file, out="newer", **OPTIONS, max_steps=5)
    with ranks("train", "--resume", "--max-steps", "10", prelude=RANK_1_LOOKS_LATER) as processes:
        errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert latest("newer").progress.step == 10 and latest("older").progress.step == 5


# Rank 0 dies while it looks for the run to resume, before the ranks agree on it: once rank 1 has set up
# (its pid posted), else rank 1 may still be connecting to it, whose loss gloo raises at setup.
RANK_0_DIES_LOOKING = """
import datetime, os
from charlm import distributed, runs
def die(*args, **kwargs):
    store = distributed.job_store().store  # torch's client: it has wait
    store.set_timeout(datetime.timedelta(seconds=60))
    store.wait([distributed.STORE_KEY.format(kind="pid", rank=1)])
    os._exit(9)
if os.environ["RANK"] == "0":
    runs.resolve = die
"""


def test_a_peer_lost_before_the_ranks_agree_on_the_run_to_resume_says_to_resume_again(fox_file):
    """A resume that lost a peer before anything was read said "start the run again", which starts a new
    run from step 0: the run is as it was, and the same resume takes it up."""
    charlm.train(fox_file, out="kept", **OPTIONS, max_steps=5)
    with ranks("train", "--resume", "kept", "--max-steps", "10", prelude=SHORT_GRACE + RANK_0_DIES_LOOKING) as (
        leader,
        peer,
    ):
        _, err = peer.communicate(timeout=120)
        leader.wait(timeout=60)
    assert peer.returncode == 1
    line = one_line(err)
    assert "process 0 (pid " in line and line.endswith("; the run was not changed: run the same command again")
    assert latest("kept").progress.step == 5


def test_a_world_size_that_does_not_divide_a_resumed_run_s_batch_names_the_ones_that_do(fox_file):
    """A resumed run keeps its batch: the advice to use a multiple of the world size cannot be followed."""
    charlm.train(fox_file, out="three", **{**OPTIONS, "batch_size": 3}, max_steps=5)
    with ranks("train", "--resume", "three", "--max-steps", "10", prelude=SHORT_QUIET_GRACE) as processes:
        errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [1, 1]
    line = one_line(errors[0])
    assert "trains 3 streams (--batch-size 3, fixed for the run), which do not split over 2 processes" in line
    assert line.endswith("resume it under a number of processes that divides 3 (1, 3: torchrun --nproc_per_node N)")


def test_torchrun_s_hang_up_stops_its_ranks_at_one_step_and_saves(fox_file):
    """A closed terminal or ssh session hangs up torchrun, which passes SIGHUP on to every rank: they
    used to die of it, losing the steps since the last checkpoint."""
    launcher = launch("train", str(fox_file), "--out", "hung", *cli_options(max_steps=100_000))
    try:
        wait_for(runs.CHECKPOINT_ROOT / "hung" / runs.LATEST)
        launcher.send_signal(signal.SIGHUP)
        out, err = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    hung = runs.CHECKPOINT_ROOT / "hung"
    assert f"stopped at step {latest('hung').progress.step}; {hung} holds step " in out, out + err
    assert f": resume with torchrun --nproc-per-node 2 -m charlm train --resume {hung}" in out  # as it was launched
    assert "[rank" not in err, err  # no rank's traceback (torchrun prints its own SignalException)


def children(parent: int) -> list[int]:
    """The processes `parent` started, from Linux's /proc (torchrun's ranks run in sessions of their own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def process_state(pid: int) -> str:
    """Linux's one-letter state of process `pid` (R running, S sleeping, T stopped, Z zombie); OSError: gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def running(pid: int) -> bool:
    """Not ended (a zombie nobody has reaped yet has ended)."""
    try:
        return process_state(pid) != "Z"
    except OSError:
        return False


def test_the_ranks_of_a_killed_torchrun_stop_and_save(fox_file):
    """torchrun starts each rank in a session of its own: killed (kill -9, out of memory), it used to
    leave them training, unsupervised and holding the run folder, until their budget was spent."""
    launcher = launch("train", str(fox_file), "--out", "orphans", *cli_options(max_steps=100_000))
    run_dir, workers = runs.CHECKPOINT_ROOT / "orphans", []
    try:
        wait_for(run_dir / runs.LATEST)
        workers = children(launcher.pid)
        launcher.kill()
        launcher.wait()
        deadline = time.time() + 60
        while any(running(pid) for pid in workers):
            assert time.time() < deadline, "the ranks went on training without torchrun"
            time.sleep(0.1)
    finally:
        launcher.kill()
        for pid in filter(running, workers):
            os.kill(pid, signal.SIGKILL)
    assert len(workers) == 2
    assert not (run_dir / runs.LOCK_PID).exists()  # rank 0 stopped cleanly, releasing the run folder
    assert latest("orphans").progress.step % SYNC_EVERY == 0  # every rank stopped at a step they agreed on
    _, err = launcher.communicate(timeout=10)  # the ranks' stderr: torch's trace for a call to the store gone
    assert err.count("[c10d]") <= 3, err  # with torchrun, one a thread that used it, not one a call


def test_the_store_of_a_killed_torchrun_is_let_be_after_one_failed_call(monkeypatch, capfd):
    """torchrun killed takes its store along, and torch writes a C++ stack trace (~2 KB) to stderr for each
    call to a store that is gone: the stopping ranks' heartbeats, posts and waits filled torchrun's stderr
    pipe, which the test above never read, until rank 0 blocked in the write, and rank 1 waited for it in a
    collective for --peer-timeout (5 minutes), past the test's 60 s. One failed call, one trace."""
    keeper = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # torchrun's
    environ = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(keeper.port), "TORCHELASTIC_USE_AGENT_STORE": "True"}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "_job_store", distributed.agent_store(timeout=5))
    rank_0, rank_1 = distributed.Ranks(rank=0, world=2), distributed.Ranks(rank=1, world=2)
    rank_0.post("pid", "pid 1 on here")
    del keeper  # torchrun killed: its store's server closes its connections
    started = time.monotonic()
    for block in range(1, 21):  # rank 0's leader_first blocks and their heartbeats; rank 1 waiting for each
        rank_0.post("beat", "0")
        rank_0.post("done", str(block))
        rank_1.await_leader(block)
    assert time.monotonic() - started < 1
    assert capfd.readouterr().err.count("[c10d]") <= 1
