"""The training loop: a planned run (plan.py) trained until its budget is spent.

    trainer = Trainer(plan, corpus)      # builds the training state (train_state.py) the plan describes
    trainer.fit()                        # the loop below, in the plan's run folder

`fit` reads top to bottom: install the stop signals' handlers, take the run folder's lock and write
run.json, then until the budget (steps or wall time) is spent or a signal asks to stop: one training step
(`train_state.train_step`), the clock and the stop request (`keep_time`), the evaluation and checkpoint
hooks when due, the progress report; then `finish`: the last step saved and scored, as the final weights
always are.
Validation is scored in fp32 whatever the training precision, so bpc figures compare across
precisions. Under torchrun the trainer is one rank of a data-parallel job: see `distributed.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings

import torch
from tqdm.auto import tqdm

from . import files, finetune, run_claim, run_lock, run_notes, runs, threads, train_state
from .checkpoint import Checkpoint, NotSaved, Progress, save
from .checkpoint import read as read_checkpoint
from .device import core_precision, hardware_said, precision_said, precision_text
from .distributed import SINGLE, SYNC_EVERY, Ranks, launcher_pid
from .errors import CharLMError, one_line, one_line_path
from .model import CharLM
from .plan import GIVEN, RunPlan, already_held, limits_spent, patience_spent
from .reporting import BestEffortLog, Reporter, SilentReporter
from .resume_record import ResumeRecord, record_resume
from .runtext import read_eval_also
from .sampler import generate
from .scoring import bits_per_char
from .sources import same_text
from .stopping import StopFlag
from .tokens import TokenCorpus
from .weight_checks import MAX_WEIGHT, unsound_weight

EVAL_TOKENS = 150_000  # validation during training scores at most this much of the split's start
NAN_CHECK_EVERY = 100  # steps between looks for divergence: a NaN loss, weights blown up (a host sync)
SETTLED = (30.0, 0.1)  # the speed is compared with the probe's once these seconds and this share of the budget passed
SLOW_SHARE = 0.7  # below this share of the probe's speed the run says it is slow
SHORT_DIGEST = 12  # hex digits of the base's sha256 a fine-tune's start line gives, as git's short hashes: `charlm info` has all 64
SAMPLE_CHARS = 300  # length of the samples shown while training (--sample-every) and at its end (commands/train.py)


class Trainer:
    """A planned run's training state and the loop that trains it in the plan's run folder. The model
    is new, built from the plan's config, unless one is given: a fine-tuning run's, grown from its
    base, or a resumed run's."""

    def __init__(self, plan: RunPlan, corpus: TokenCorpus, ranks: Ranks = SINGLE, model: CharLM | None = None):
        self.plan, self.corpus, self.ranks = plan, corpus, ranks
        self.config, self.run_dir, self.base = plan.config, plan.run_dir, plan.base
        self.state = train_state.build(plan.config, corpus, ranks, model, head_cutoffs=plan.head_cutoffs)
        self.model, self.device, self.precision = self.state.model, self.state.device, self.state.precision
        self.eval_also_ids = read_eval_also(plan.config, corpus.vocab) if ranks.leader else None
        self.clock = 0.0  # the training time all ranks agree on (rank 0's, broadcast)
        self.ending = False  # this step is the run's last (limits or --patience spent, a signal): so is its save
        self.out_of_patience = False  # validation stopped improving for --patience evaluations: stop
        self.stop_flag = StopFlag(launcher_pid())  # what the signals ask while `fit` runs (`start` installs it)
        self.stop_said = False  # `say_stopping` said the run stops: once, as a scoring heard it or after
        self.stop_signal: int | None = None  # the signal that stopped the run (under torchrun: maybe a peer's)
        self.checkpoint_interval = plan.config.checkpoint_interval()
        self.saved_step: int | None = None  # the step of the last checkpoint written
        self.resumed_from: tuple[int, ...] | None = None  # the identity of the file a resume read (`restore`)
        self.text_moved = False  # a resume read the run's text at a path its checkpoint does not record
        self.resume = ResumeRecord()  # what this resume changed, and the run's earlier resumes (`restore`)
        self.saved_at = 0.0  # the clock at the last save, or failed save: --checkpoint-every's seconds count from it
        self.save_error: str | None = None  # why the last checkpoint could not be written (--save-errors warn)
        self.samples = BestEffortLog(self.run_dir / runs.SAMPLES)  # --sample-every's samples
        self.probe_check: tuple[float, float, int] | None = None  # (when, elapsed and tokens at the start)
        self.reporter: Reporter | SilentReporter = SilentReporter()
        self.lock: run_lock.RunLock | None = None  # rank 0's lock on the run folder, while it trains

    @property
    def progress(self) -> Progress:
        return self.state.progress  # replaced by restore()

    @property
    def result(self) -> CharLM:
        """The weights that are scored, saved for sampling and returned: the average, if kept."""
        return self.state.result

    @property
    def exit_status(self) -> int:
        """0, or the shell's status for the signal that stopped the run, so a script sees it did not finish."""
        return 128 + self.stop_signal if self.stop_signal else 0

    @property
    def stopped_early(self) -> bool:
        """Whether a signal stopped the run before its limits: its last line says where (commands/train.py)."""
        return self.stop_signal is not None

    def run_info(self) -> dict:
        """What `charlm runs` shows about this run, and why its planned options are what they are (run.json)."""
        return {
            "corpus": self.corpus.name,
            "sources": self.corpus.sources,  # where the text is now: a resume on it at a new path records it
            "digest": self.corpus.key,  # whose text they hold (`runtext.run_sources` reads them for it)
            "text": self.corpus.meta.get("text"),  # the digest of the text as read: the same text re-encoded
            "parameters": self.model.num_parameters(),
            "vocabulary": len(self.corpus.vocab),
            "config": self.config.to_dict(),
            "reasons": self.plan.reasons,
            "resumes": self.resume.records,
            **({"base": dataclasses.asdict(self.base)} if self.base else {}),
        }

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> CharLM:
        """Train until the budget is spent or a signal asks to stop; checkpoints on the way (the loop of
        the module's docstring, read top to bottom). Under torchrun a peer lost (gone, or not answering)
        stops it: `run_notes.lost_note` says where the run goes on from."""
        progress = self.progress
        max_seconds = self.config.max_seconds()
        with contextlib.ExitStack() as stack:
            self.start(stack, max_seconds)
            if self.resumed_spent(max_seconds):
                self.say_nothing_to_train()
            else:
                self.check_patience_resumed()
            run_start, stopping = time.perf_counter() - progress.elapsed, False
            while (share := self.spent(max_seconds)) < 1.0 and not stopping and not self.out_of_patience:
                step_start = time.perf_counter()
                loss = train_state.train_step(self.state, share)
                seconds = time.perf_counter() - step_start
                threads.record(seconds, self.state.windows.tokens_per_step)  # the thread count follows the CPU
                stopping = self.keep_time(time.perf_counter() - run_start)
                self.ending = stopping or self.spent(max_seconds) >= 1.0  # as the loop's test after this step
                self.hooks_if_due()
                if progress.val_step == progress.step and not stopping:
                    stopping = self.stop_asked()  # as this step was scored: it stops here, scored and saved
                self.reporter.step(loss, seconds)  # the progress bar, and the metrics' chars/s
                self.compare_with_probe()
            stopping = self.finish(stopping)
        self.stop_signal = self.stop_flag.signum if stopping else None  # a stop is always a signal's
        return self.result

    def start(self, stack: contextlib.ExitStack, max_seconds: float | None) -> None:
        """What the loop holds while it runs, each released by `stack` when it ends: the signal handlers that
        ask it to stop (`stop_flag`), rank 0's run folder (`open_run`), --detect-anomaly; and
        what it starts from: the model in training mode, the CPU threads, when to compare the speed with
        the size probe's."""
        # the handlers first: a Ctrl-C as the start line shows (a notebook's stop button) stops the run at its
        # first step, saved
        stack.enter_context(self.stop_flag.installed())
        if self.ranks.leader:
            self.open_run(stack, max_seconds)
        if self.config.detect_anomaly:
            with warnings.catch_warnings():  # torch's warning that it is slow: the option's help says so
                warnings.filterwarnings("ignore", "Anomaly Detection has been enabled")
                stack.enter_context(torch.autograd.detect_anomaly())
        self.model.train()
        threads.configure(self.config.threads, self.device)
        self.schedule_probe_check(max_seconds)

    def open_run(self, stack: contextlib.ExitStack, max_seconds: float | None) -> None:
        """Rank 0's start, each part closed by `stack` when training ends: the run folder's lock, run.json,
        the start lines (`start_notes`, said only once the folder is the run's: a run refused it says the
        refusal alone), the progress bar and metrics log. A new run drops samples.txt: a run's that died
        before its first checkpoint."""
        if run_claim.claimed(self.run_dir):  # a new run's default folder: under its name only now, with run.json in it
            run_claim.move_into_place(self.run_dir, self.run_info())
        self.lock = run_lock.RunLock(self.run_dir, resuming=self.saved_step is not None)
        stack.enter_context(self.lock)
        self.check_not_overtaken()
        runs.write_run_info(self.run_dir, self.run_info())
        for note in self.start_notes():
            self.say(one_line(note))
        reporter = Reporter(
            self.run_dir,
            self.config,
            self.progress,
            self.corpus.chars_per_token,
            self.device,
            max_seconds,
            lock=self.lock,
            probed_chars_per_second=self.plan.probed_chars_per_second,  # the bar's speed until the run has its own
            with_bar=not self.resumed_idle(max_seconds),
        )
        self.reporter = stack.enter_context(contextlib.closing(reporter))
        if not self.progress.step:
            (self.run_dir / runs.SAMPLES).unlink(missing_ok=True)

    def check_not_overtaken(self) -> None:
        """Refuse, now that the lock is held, a run folder another process trained in since this run
        looked at it (before the lock: a resume reads its checkpoint, a new run checks the folder is
        free, then loads its corpus): its steps would be written over, a resume's from an older step."""
        latest = runs.newest_of(self.run_dir / runs.LATEST)
        if self.saved_step is None:
            if runs.holds_checkpoint(self.run_dir):
                raise already_held(self.run_dir, ", which another process trained while this one started")
            return
        if self.resumed_from is not None and files.identity(latest) == self.resumed_from:
            return  # the very file the resume read: not read (and checked) a second time
        try:
            ahead = read_checkpoint(latest).progress.step
        except CharLMError:  # none, or damaged: this run's checkpoint is the one to go on from
            return
        if ahead > self.saved_step:
            raise CharLMError(
                f"{self.shown_dir} went on to step {ahead} (another process trained it) while this resume "
                f"started from step {self.saved_step}; {run_notes.kept_note(self.run_dir, ahead)}"
            )

    def start_notes(self) -> list[str]:
        """The lines a run starts with (`open_run`), for `charlm train` and `charlm.train` alike: what trains on
        what, where, and from which step (a resumed run's line would read as a new run's without it); a
        fine-tune's base and the characters its text adds, so a stray one is seen before it is learned (a
        resume: that it goes on)."""
        model = self.model
        resumed = (
            "" if self.saved_step is None else f", resumed at step {self.saved_step} ({self.saved_at:.0f}s trained)"
        )
        precision = precision_text(self.device, self.precision, type(model.core))
        hardware = hardware_said(str(self.device), precision, self.ranks.world, with_index=True)
        training = (
            f"training {model.architecture()} ({model.num_parameters():,} parameters) "
            f"on {self.corpus.name}: {len(self.corpus.train_ids):,} tokens, vocabulary "
            f"{self.corpus.vocab.size_text()}; {hardware}; run folder {self.shown_dir}{resumed}{self.resume.said()}"
        )
        notes = [training]
        if self.base and self.saved_step is not None:  # its new characters were said when it started
            notes.append(f"continuing the fine-tune of {self.base.describe(SHORT_DIGEST)}")
        elif self.base:
            added = finetune.new_characters_note(self.corpus, self.base.vocab_size, self.config)
            notes.append(f"fine-tuning from {self.base.describe(SHORT_DIGEST)}; {added}")
        return notes

    @property
    def shown_dir(self) -> str:
        """The run folder as the lines that name it show it: a folder renamed by hand to a space, quoted."""
        return one_line_path(self.run_dir)

    def schedule_probe_check(self, max_seconds: float | None) -> None:
        """With a time budget, set when `compare_with_probe` looks: once the run has settled (`SETTLED`)."""
        if max_seconds:
            settled = max(SETTLED[0], SETTLED[1] * max_seconds)
            self.probe_check = (self.progress.elapsed + settled, self.progress.elapsed, self.progress.tokens)

    def resumed_spent(self, max_seconds: float | None) -> bool:
        """Whether this resume's limits were spent before its first step: a resume taken up all the same,
        as it gave the run's text at a new path (`plan.resumed`'s `text_given`), which `open_run` recorded."""
        return self.saved_step is not None and self.spent(max_seconds) >= 1.0

    def say_nothing_to_train(self) -> None:
        """Rank 0 says why this resume trains no step (`resumed_spent`), even under --quiet: nothing else does.
        Where a stop cut the last step's scoring short, that it scores it now (`finish`, the loop taking no step)."""
        if not self.ranks.leader:
            return
        if not self.progress.step_scored:
            self.say_always(run_notes.scoring_resumed_note(self.run_dir, self.progress.step, self.moved_to))
            return
        spent, worse = limits_spent(self.config, self.progress, self.run_dir), self.patience_spent()
        self.say_always(run_notes.nothing_to_train_note(spent, self.corpus.sources, worse))

    def check_patience_resumed(self) -> None:
        """A resume of a run --patience stopped stays stopped (`decide_patience`); said even under --quiet, as
        nothing else says why the limits given were not trained to."""
        if self.decide_patience(resuming=True):
            self.say_always(run_notes.patience_resumed_note(self.progress, self.run_dir, self.moved_to))

    @property
    def moved_to(self) -> list[str] | None:
        """The text's new path, which a resume records even where it trains nothing (None: where it was)."""
        return self.corpus.sources if self.text_moved else None

    def resumed_idle(self, max_seconds: float | None) -> bool:
        """Whether this resume takes no step, its limits or --patience spent (`resumed_spent`, `decide_patience`):
        its progress bar would show steps never taken, drawn full above and below the line that says why."""
        return self.resumed_spent(max_seconds) or (self.saved_step is not None and self.patience_spent())

    def spent(self, max_seconds: float | None) -> float:
        """How much of the budget is spent: steps or time, whichever runs out first."""
        by_steps = self.progress.step / self.config.max_steps if self.config.max_steps else 0.0
        by_time = self.clock / max_seconds if max_seconds else 0.0
        return max(by_steps, by_time)

    def keep_time(self, elapsed: float) -> bool:
        """Set the run's clock to this step's `elapsed` and say whether to stop (`stop_asked`): every step in
        one process, every SYNC_EVERY steps under torchrun, where asking is a host sync."""
        self.progress.elapsed = elapsed
        if self.ranks.active and self.progress.step % SYNC_EVERY:
            return False
        return self.stop_asked()

    def stop_asked(self) -> bool:
        """Whether to stop, the clock set to the last step's elapsed time (a scoring's seconds are not training's:
        the stop line would call a run with time left finished). Under torchrun every rank asks at the same step
        and takes rank 0's clock and any rank's stop request: a signal to one rank alone (`kill PID`) stops them
        all, each as though it came to it."""
        stop = self.stop_flag
        if not self.ranks.active:
            self.clock = self.progress.elapsed
            return stop.requested
        asked = stop.signum if stop.requested else 0
        self.clock, signum = self.ranks.clock_and_stop(self.progress.elapsed, asked, self.device)
        if signum:
            stop.ask(signum)
        return bool(signum)

    def hooks_if_due(self) -> None:
        """The evaluation hook every --eval-every steps, a plain save at --checkpoint-every (not at the run's
        last step, whose own save follows), else every NAN_CHECK_EVERY steps a look for divergence. The two
        hooks make that look themselves before scoring or writing anything (a diverged model is neither
        scored nor saved); the look waits for the device, so the steps between hooks make it only now and then."""
        step = self.progress.step
        every_steps, every_seconds = self.checkpoint_interval
        if step % self.config.eval_every == 0:
            self.evaluate_and_save()
        elif self.ending:
            return  # `finish` saves this step itself, before and after it scores it
        elif (every_steps and step % every_steps == 0) or (
            every_seconds and self.clock - self.saved_at >= every_seconds
        ):
            self.save()
        elif step % NAN_CHECK_EVERY == 0:
            self.check_diverged()

    def compare_with_probe(self) -> None:
        """Once, when the run has settled: say so (`run_notes.slow_note`) if it trains well below the speed
        its size was chosen for: the machine got busier after the probe."""
        if self.probe_check is None or self.progress.elapsed < self.probe_check[0]:
            return
        _, since_elapsed, since_tokens = self.probe_check
        self.probe_check = None
        probed = self.plan.probed_chars_per_second
        if not probed or not self.ranks.leader:
            return
        seconds, tokens = self.progress.elapsed - since_elapsed, self.progress.tokens - since_tokens
        speed = tokens * self.corpus.chars_per_token / max(seconds, 1e-9)
        if speed < SLOW_SHARE * probed:  # given, the probe timed its size for dropout's passes
            hidden_given = self.plan.reasons.get("hidden") == GIVEN
            self.say(run_notes.slow_note(speed, probed, self.config.hidden, self.config.dropout, hidden_given))

    # -- stopping ------------------------------------------------------------------------------
    def finish(self, stopping: bool) -> bool:
        """The loop done, its last step saved, then scored (the final weights always are, and best.pt kept), the
        stop said in between; returns whether a signal stops the run, asked as late as that last scoring."""
        progress = self.progress
        stopping = self.stop_asked() or stopping
        self.ending = True
        scoring = progress.val_step != progress.step
        if scoring and self.saved_step != progress.step:
            # saved before the scoring, which takes a big model tens of seconds: a kill after a stop signal
            # (docker's after 10 s), or a second Ctrl-C, then keeps this step; a failed save is tried again,
            # and said, by the scoring's save
            self.save(warn=False)
        if stopping:
            self.say_stopping(scoring)
        if scoring:
            self.evaluate_and_save(on_cadence=False)
            if not stopping and self.stop_asked():  # asked as it scored: every rank asks, as in the loop
                stopping = True
                self.say_stopping(scoring=False)
        return stopping

    def say_stopping(self, scoring: bool) -> None:
        """Rank 0 says the run stops at this step (`run_notes.stopping_note`), saved, and whether it scores it:
        once, the first time it knows (a scoring may hear the stop before the loop does)."""
        if self.ranks.leader and not self.stop_said:
            self.stop_said = True
            signum, step = self.stop_flag.signum, self.progress.step
            self.say(run_notes.stopping_note(step, signum, self.run_dir, self.saved_step, scoring))

    def say_stop_if_asked(self) -> None:
        """Before each window of a scoring (`evaluate_and_save`), which takes a big model tens of seconds: a stop
        asked before it or while it scores is said at once, and the run stops at this step (`fit`), saved after."""
        if self.stop_flag.requested and not self.stop_said:
            self.ending = True  # this step's save, if it fails (--save-errors warn), says the run stops
            self.say_stopping(scoring=True)

    def kept(self) -> run_notes.Kept:
        """What the run folder keeps as a signal stops the run, for its stop line (`run_notes.stopped_note`)."""
        progress = self.progress
        saved_last = self.saved_step == progress.step
        return run_notes.Kept(
            self.run_dir,
            self.saved_step,
            self.save_error,
            last=saved_last and self.spent(self.config.max_seconds()) >= 1.0,
            scored=progress.val_step == progress.step,
            worse_evaluations=progress.worse_evaluations if saved_last and self.out_of_patience else 0,
        )

    # -- hooks: evaluation, samples, checkpoints ------------------------------------------------
    def evaluate_and_save(self, on_cadence: bool = True) -> None:
        """Rank 0 scores the validation text on the weights it saves (`result`, not DDP's wrapper); the
        other ranks wait for it while it is alive (`leader_first`: a long --eval-also text is no hang). Only
        an evaluation `on_cadence` (every --eval-every steps) counts towards --patience: one at a stop
        between them, which a run never stopped does not make, would end a resumed run at another step
        (`Progress.patience_best_bpc`)."""
        self.check_diverged()  # before scoring: weights thrown past what a reader takes score as NaN
        progress, improved, also = self.progress, False, None
        kept_best = progress.best_bpc, progress.best_step
        with self.ranks.leader_first(setup=False):  # the others wait while rank 0 scores, however long
            if self.ranks.leader:
                listen = self.say_stop_if_asked
                val_bpc = bits_per_char(self.result, self.corpus.val_ids, EVAL_TOKENS, each_window=listen)
                improved = progress.scored(val_bpc, on_cadence)
                if self.eval_also_ids is not None:
                    also = bits_per_char(self.result, self.eval_also_ids, each_window=listen)
        progress.val_step = progress.step
        # --patience decides before the save, so a failed save (--save-errors warn) says whether the run goes on;
        # it is said after, when best.pt holds what the note says it keeps
        ran_out = self.decide_patience()
        self.ending = self.ending or self.out_of_patience
        # A best.pt not written still holds the previous best: a later, better one replaces it. One written
        # when latest.pt was not (a full disk) holds this one: putting the previous best back would let a
        # later, worse evaluation replace it.
        best_saved = self.save(improved)
        if improved and not best_saved:
            progress.best_bpc, progress.best_step = kept_best
        if ran_out:
            self.say(run_notes.patience_note(self.config.patience, progress))
        if not self.ranks.leader:
            return
        self.reporter.write_row(val_bpc=progress.val_bpc, eval_also_bpc=also)
        evaluations = -(-progress.step // self.config.eval_every)
        if self.config.sample_every and evaluations % self.config.sample_every == 0:
            self.show_sample()

    def decide_patience(self, resuming: bool = False) -> bool:
        """Stop once validation has not improved for --patience evaluations in a row: the text is being
        memorized and best.pt already holds the best weights. Every rank takes rank 0's word (`out_of_patience`);
        returns whether rank 0 found it here, to say it once. `resuming`: before the first step, where a run
        that stopped so stops again, untrained, unless --patience was raised past its count (or is 0)."""
        patience, progress = self.config.patience, self.progress
        if not patience or self.out_of_patience or (resuming and not progress.step):
            return False
        out = self.ranks.leader and bool(self.patience_spent())
        (decided,) = self.ranks.from_leader([float(out)], self.device)
        self.out_of_patience = bool(decided)
        return out

    def patience_spent(self) -> int:
        """The evaluations in a row that have not improved on the best, where --patience ran out (0: it did not;
        rank 0 knows)."""
        return patience_spent(self.config, self.progress)

    def show_sample(self) -> None:
        """A short sample under the progress bar and in samples.txt. It draws from its own generator,
        so the training run is the same with or without samples."""
        text = generate(self.result, "", length=SAMPLE_CHARS, random_seed=self.progress.step)[0]
        block = f"--- sample at step {self.progress.step} (val {self.progress.val_bpc:.3f} bpc) ---\n{text.strip()}\n"
        tqdm.write(block)
        self.samples.append(block + "\n")  # best effort, as metrics.jsonl: checkpoints decide what stops a run

    def save(self, improved: bool = False, warn: bool = True) -> bool:
        """Write latest.pt (and best.pt); a failed write keeps the old files and stops or warns (unless not
        `warn`: a stop's save tried again soon). Returns whether best.pt holds this step (`improved`, and
        written, whatever else failed). The other ranks wait for rank 0's write while its heartbeat goes on
        (`leader_first`), not a clock: a huge model's write to a slow disk may outlast --peer-timeout."""
        self.check_diverged()
        checkpoint, error, best_written = self.checkpoint(), None, improved
        lost = self.lock.lost() if self.lock else None  # the run folder was removed: write nothing, stop
        with self.ranks.leader_first(setup=False):  # the others wait while rank 0 writes, however long
            if self.ranks.leader and not lost:
                error, best_written = self.write_files(checkpoint, improved)
                if error and best_written and not (self.run_dir / runs.LATEST).exists():
                    self.saved_step = self.progress.step  # its first latest.pt failed: it goes on from best.pt
        if error and self.lock:  # removed while written (`write_files`): the failure is that, not the disk
            lost = self.lock.lost()
        failed, gone = self.ranks.from_leader([float(error is not None), float(lost is not None)], self.device)
        if gone:
            moved_to = self.lock.moved_to() if self.lock else None
            raise CharLMError(
                run_lock.stopped_message(lost or "rank 0's run folder was removed", self.progress.step, moved_to)
            )
        if failed:
            error = error or "rank 0 could not write the checkpoint"
            if self.config.save_errors == "warn":
                if self.ranks.leader and warn:
                    self.say_always(run_notes.not_saved_warning(error, self.ending))
                self.saved_at, self.save_error = self.clock, error  # try again at the next checkpoint time
                return best_written
            raise CharLMError(run_notes.not_saved_message(error, self.progress.step, self.run_dir, self.saved_step))
        self.saved_step, self.saved_at, self.save_error = self.progress.step, self.clock, None
        return improved

    def checkpoint(self) -> Checkpoint:
        """Every rank takes part (the hidden states and RNG states are gathered); rank 0 writes it."""
        return Checkpoint(
            model_config=self.model.config,
            vocab=self.corpus.vocab,
            weights=self.result.state_dict(),
            config=self.config,
            corpus=self.corpus.record(),
            progress=self.progress,
            device=str(self.state.device),
            precision=self.state.precision,
            **self.recorded_hardware(),
            training=train_state.capture(self.state),
            base=self.base,
        )

    def write_files(self, checkpoint: Checkpoint, improved: bool) -> tuple[str | None, bool]:
        """Rank 0's write of latest.pt (and best.pt): why it failed (None: written), and whether best.pt
        holds this step. The lock is looked at again just before each rename: a folder removed and taken by
        another run while the checkpoint was serialized and written gets none of it. best.pt goes first: a kill
        between the two then leaves latest.pt behind, and the resumed run makes the same evaluation again,
        which writes both; latest.pt first would record a best that best.pt never got (at the final step, for
        good: the run is over)."""
        names = [runs.BEST, runs.LATEST] if improved else [runs.LATEST]
        try:
            check = self.lock and (lambda: self.lock.check(self.progress.step))
            for note in save(checkpoint, [self.run_dir / name for name in names], check or None):
                self.say_always(f"warning: {note}")
        except NotSaved as e:
            return str(e), improved and self.run_dir / runs.BEST in e.saved
        return None, improved

    def check_diverged(self) -> None:
        """Stop, writing nothing, once training has diverged: a loss was NaN or infinite, or the weights
        (the raw ones and their average) hold what no checkpoint reader takes (`unsound_weight`). The
        loss is computed before its step's update, so a last step that threw the weights past that bound
        had a finite one. Every rank decides alike: the loss is averaged over ranks, the weights are equal."""
        why = "the loss became NaN or infinite" if self.state.nonfinite.item() else None
        for model in dict.fromkeys((self.model, self.result)):
            if why is None and (name := unsound_weight(model.state_dict())):
                why = f"{name} became NaN, infinite or past {MAX_WEIGHT:.0e}"
        if why:
            raise CharLMError(run_notes.diverged_message(why, self.config.lr, self.run_dir, self.saved_step))

    # -- lines under the progress bar ----------------------------------------------------------
    def say(self, line: str) -> None:
        """A line under the progress bar about how the run goes, which --quiet (quiet=True) keeps unsaid."""
        if not self.config.quiet:
            self.say_always(line)

    @staticmethod
    def say_always(line: str) -> None:
        """A line under the progress bar that --quiet does not silence: a checkpoint not written, or written
        aside, and why a resume trains nothing; unsaid, a quiet run would lose its steps, or end untrained,
        without a word."""
        tqdm.write(line, file=sys.stderr)

    # -- resuming ------------------------------------------------------------------------------
    def restore(self, checkpoint: Checkpoint, read_from: tuple[int, ...] | None = None) -> None:
        """Continue from a checkpoint of this run (train_state.restore), on the same corpus; `read_from`:
        the identity of the file it was read from (`files.identity`), for `check_not_overtaken`."""
        self.resumed_from = read_from
        self.text_moved = checkpoint.corpus["sources"] != self.corpus.sources
        # `runtext.run_corpus`, which read this corpus for the resume, checked this already: a guard for a caller
        # handing in another corpus than the run's
        if not same_text(checkpoint.corpus, self.corpus.key, lambda: self.corpus.meta.get("text")):
            raise CharLMError(f"{self.shown_dir}: its checkpoint is of another corpus than the one read for it")
        train_state.restore(self.state, checkpoint, self.config.random_seed)
        self.clock = checkpoint.progress.elapsed
        self.saved_step, self.saved_at = checkpoint.progress.step, checkpoint.progress.elapsed
        self.resume = record_resume(checkpoint, self.config, self.run_dir, self.hardware_now(checkpoint))

    def recorded_hardware(self) -> dict:
        """What a checkpoint records of the hardware beyond device and precision: the recurrent core's
        precision (device.core_precision) and, on a CPU, the cores the run may use."""
        device = self.state.device
        return {
            "core_precision": core_precision(device, self.state.precision, type(self.model.core)),
            "cores": threads.available_cores() if device.type == "cpu" else None,
        }

    def hardware_now(self, saved: Checkpoint) -> str:
        """What this session trains on, said as `saved.hardware()` says what trained `saved`: what an older
        checkpoint did not record (the core's precision, the cores) is left out of both, so it is no change."""
        recorded = self.recorded_hardware()
        core = recorded["core_precision"] if saved.core_precision else None
        cores = recorded["cores"] if saved.cores else None
        return hardware_said(
            str(self.state.device), precision_said(self.state.precision, core), self.ranks.world, cores
        )
