"""`charlm train`: a new run, a fine-tuning run or a resumed one, as one rank of a job (a plain process
is rank 0 of 1); only rank 0 prints. What trains (torch) is imported where it is used: `charlm train
--help` and Tab completion need none of it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .. import console, run_notes, runs
from ..config import MAX_PEER_TIMEOUT, PEER_TIMEOUT, Config, parse_duration
from ..errors import one_line
from ..fields import typed
from ..stopping import Terminated, leaving_at_once
from .completion import corpora, run_names
from .options import WholeRunSteps, options_of

if TYPE_CHECKING:
    from ..distributed import Ranks
    from ..trainer import Trainer


@click.command()
@click.argument("corpus", nargs=-1, shell_complete=corpora)
@click.option(
    "--out",
    shell_complete=run_names,
    help="run folder: a name (under checkpoints/) or a path as typed (./NAME, NAME/: the folder here)  "
    "[default: CORPUS-DATE-TIME]",
)
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    shell_complete=run_names,
    help="continue a run (default: the most recent); only limits, cadence, reporting, the learning rate, device and "
    "precision may change; a CORPUS given is the run's own text at a new path (moved or renamed), recorded there, "
    "as is an --encoding that reads it (a UTF-16 text saved as UTF-8)",
)
@click.option(
    "--init-from",
    metavar="RUN",
    shell_complete=run_names,
    help="fine-tune: a new run whose weights start from RUN's (its architecture; new characters added), at a "
    "gentler --lr than a new run's unless given (said as it starts)  [default: none: new weights]",
)
@options_of(Config, types={"max_steps": WholeRunSteps()})
@click.option(  # listed last: only torchrun runs need it
    "--peer-timeout",
    default=f"{PEER_TIMEOUT / 60:g}m",
    show_default=True,
    metavar="DURATION",
    help="under torchrun: a process that has not answered the others for this long is named, and the job "
    "stops (its last checkpoint kept); rank 0 working alone, its heartbeat going on (preparing the corpus, "
    "scoring, writing a checkpoint), may take 6 times this per piece of work before it is named stuck",
)
def train(
    corpus: tuple[str, ...], out: str | None, resume: str | None, init_from: str | None, peer_timeout: str, **options
) -> None:
    """Train on CORPUS: text files, folders of .txt files or catalog names (none: the built-in Shakespeare).

    Under `torchrun --nproc_per_node N -m charlm train ...` the N processes train one model together."""
    console.outlive_readers()  # its terminal closed (cli.main) or `| tee` gone: it stops saved and scored, or trains on
    with leaving_at_once():
        from .. import api, finetune, sizing
        from ..distributed import Ranks, peer_note
    given = {k: v for k, v in options.items() if v is not None}
    ranks = Ranks.from_env()
    with ranks.alike():  # every rank reads the options alike, before the processes meet: rank 0 says what fails
        api.check_start(out, resume is not None, init_from, given.get("tensorboard"))
        timeout = parse_duration(peer_timeout, "--peer-timeout", required=True, most=MAX_PEER_TIMEOUT)
        if resume is None:
            # a batch that does not split fails here too (a GPU's fitted batch is a multiple of 16)
            config = Config(**given) if init_from is None else finetune.alone(given)
            ranks.shard(config.batch_size or sizing.DEFAULT_BATCH_SIZE)
    with ranks.group(timeout):
        # --resume alone continues the most recent run, as charlm.train(resume=True) does
        resumed = False if resume is None else resume or True
        try:
            trainer = api.start_trainer(list(corpus), given, out, resumed, init_from, ranks)
        except KeyboardInterrupt:  # the corpus read, the run planned: no checkpoint of this start yet
            raise KeyboardInterrupt(run_notes.not_started_note(resume is not None)) from None
        except Terminated:  # SIGTERM or SIGHUP meanwhile: said as Ctrl-C's is, its status (143, 129) kept
            click.echo(one_line(run_notes.not_started_note(resume is not None)))
            raise
        # a peer lost from here on: the line says where the run goes on from
        with peer_note(lambda: peer_lost_note(trainer)):
            status = train_ranks(trainer, ranks)
    if status:  # after rank 0's last lines (`Ranks.leaving`): torchrun stops every rank once one fails
        sys.exit(status)


def train_ranks(trainer: Trainer, ranks: Ranks) -> int:
    """`train` as one rank of the job (a plain process is rank 0 of 1); only rank 0 prints. Returns the
    exit status (`Trainer.exit_status`)."""
    from ..distributed import peer_note

    if ranks.leader:
        try:
            trainer.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: the run stops at once (the stop's failed save said here)
            raise KeyboardInterrupt(run_notes.stopped_note(trainer.kept(), stopped_at=None)) from None
    else:
        trainer.fit()
    with peer_note(lambda: ended_note(trainer)), ranks.leaving():  # the others wait for rank 0's last lines
        return say_ended(trainer) if ranks.leader else trainer.exit_status


def ended_note(trainer: Trainer) -> str:
    """What a peer lost once training ended leaves: a finished run, whole (a resume would train nothing),
    or one stopped early, to resume."""
    if trainer.stopped_early:
        return peer_lost_note(trainer)
    return f"; the run had finished: {run_notes.saved_note(trainer.run_dir, trainer.saved_step, trainer.save_error)}"


def peer_lost_note(trainer: Trainer) -> str:
    """`run_notes.lost_note` of the run as it stands when the peer is lost (its last checkpoint written)."""
    return run_notes.lost_note(trainer.run_dir, saved=trainer.saved_step is not None)


def say_ended(trainer: Trainer) -> int:
    """Rank 0's last lines: where the run stopped or how it ended, and a sample of best.pt. Returns the
    exit status (`Trainer.exit_status`)."""
    from .. import api, checkpoint
    from ..trainer import SAMPLE_CHARS

    config, run_dir = trainer.config, trainer.run_dir
    if trainer.stopped_early:  # `stopped at step N` begins the line a script reads (docs/scaling.md)
        click.echo(one_line(run_notes.stopped_note(trainer.kept(), stopped_at=trainer.progress.step)))
        return trainer.exit_status
    click.echo(one_line(run_notes.done_note(trainer.progress, run_dir, trainer.saved_step, trainer.save_error)))
    if not config.quiet and trainer.saved_step:
        best = checkpoint.read(runs.resolve(run_dir))
        click.echo(
            one_line(
                f"--- sample from best.pt, step {best.progress.step} (charlm sample --checkpoint {typed(run_dir)}) ---"
            )
        )
        text = api.generate(best.model(), "", length=SAMPLE_CHARS, random_seed=config.random_seed)
        click.echo(text.lstrip("\n"))
    return 0
