"""Poems in their forms (issue 28): how often free samples already fit a form, and what the form costs.

    python -m bench.forms RUN ../shared/corpora/tangshi300.txt --form 五言绝句 --samples 100 \\
        --out bench/results/forms-tangshi300.txt

The seeds are the title and author lines of the text's own poems in that form (a poem's title line,
its author line, then its lines, as tangshi300 writes them), taken in turn, one random seed per sample.
Each seed is continued twice with the same random seed and decoding options (charlm's defaults,
temperature --temperature): freely, the poem being what comes before the first blank line, and with
`form=`, which always fits. Reported: the share of free poems that fit the form exactly (its
punctuation included), with any of 。？！ closing a verse pair, and whose start has the form's shape
(the poem may go on: a 五言绝句's shape begins a 五言律诗), and the bits per character the
model gives to each set of poems, the seed read first (`scoring.surprise`): a constrained poem the
model finds much less likely than its free ones would be a form forced on text it does not believe.
The real poems' bits per character under the same seeds are the reference. A few poems of each kind
are quoted.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import charlm
from bench.common import errors_in_one_line, read_corpus
from charlm.forms import FORMS, is_han, template_of
from charlm.scoring import surprise


def poems(text: str) -> list[tuple[str, str]]:
    """(seed, body) of each poem block: the seed is its title and author lines, the body the rest."""
    found = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 3:
            found.append(("\n".join(lines[:2]) + "\n", "\n".join(lines[2:])))
    return found


def loosely_fits(poem: str, form: str) -> bool:
    """The form's shape, any of 。？！ closing a verse pair (the real poems use all three)."""
    shape = re.escape(FORMS[form]).replace("_", ".").replace("。", "[。？！]")
    return re.fullmatch(shape, poem) is not None and all(is_han(c) for c in re.sub(r"[，。？！\n]", "", poem))


def bpc(model, seed: str, poem: str) -> float:
    return surprise(model, poem, context=seed).bpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder or checkpoint")
    parser.add_argument("corpus", help="the poems whose titles and authors seed the samples")
    parser.add_argument("--form", default="五言绝句", choices=list(FORMS))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--quote", type=int, default=3, help="poems of each kind quoted")
    parser.add_argument("--out", default="bench/out/forms.txt")
    args = parser.parse_args()

    model = charlm.load(args.run)
    template = template_of(args.form)
    seeds = [(seed, body) for seed, body in poems(read_corpus(args.corpus)) if template.fits(body)]
    length = len(template.slots) * 3
    header = (
        f"run: {args.run}; corpus: {args.corpus}; form: {args.form}; samples: {args.samples}; "
        f"temperature: {args.temperature}; seeds: the title and author lines of the {len(seeds)} poems "
        "of the text that fit the form, in turn"
    )
    lines = [header]
    free, fitted, real = [], [], []
    for i in range(args.samples):
        seed, body = seeds[i % len(seeds)]
        options = {"temperature": args.temperature, "random_seed": i}
        text = charlm.generate(model, seed, length=length, **options)[len(seed) :]
        poem = text.split("\n\n")[0]
        formed = charlm.generate(model, seed, form=args.form, **options)[len(seed) :]
        assert template.fits(formed), formed
        free.append((seed, poem))
        fitted.append((seed, formed))
        if i < len(seeds):
            real.append((seed, body))
    exact = sum(template.fits(p) for _, p in free)
    loose = sum(loosely_fits(p, args.form) for _, p in free)
    lines.append(f"free samples that fit {args.form} exactly: {exact}/{len(free)} ({exact / len(free):.0%})")
    lines.append(
        f"free samples that fit with any of 。？！ closing a pair: {loose}/{len(free)} ({loose / len(free):.0%})"
    )
    begins = sum(template.fits(p[: len(template.slots)]) for _, p in free)
    lines.append(f"free samples that begin with the form's shape (and may go on): {begins}/{len(free)}")
    lines.append(f"samples with form={args.form} that fit: {len(fitted)}/{len(fitted)} (100%)")
    for name, group in (("free poems", free), (f"form={args.form} poems", fitted), ("the real poems", real)):
        scores = [bpc(model, seed, poem) for seed, poem in group if poem]
        lines.append(
            f"bpc the model gives {name} after their seeds: mean {statistics.fmean(scores):.3f}, "
            f"median {statistics.median(scores):.3f} (n={len(scores)})"
        )
    fitting_free = [(s, p) for s, p in free if template.fits(p)]
    if fitting_free:
        scores = [bpc(model, s, p) for s, p in fitting_free]
        lines.append(f"bpc of the free poems that fit exactly: mean {statistics.fmean(scores):.3f}")
    for name, group in (("free", free), (f"form={args.form}", fitted)):
        for seed, poem in group[: args.quote]:
            lines.append(f"\n--- {name}, seed {seed.strip()!r} ---\n{poem}")
    report = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report, encoding="utf-8")
    print(report, end="")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
