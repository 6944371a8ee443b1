"""What eval and inspect say of the characters of a text the model never saw: how many, whether the score
left them out or scored them as the unknown symbol, and what to do. One wording for `charlm eval`,
--eval-also, `charlm inspect` and `charlm.bits_per_char`, apart from scoring.py, which computes the bits and
says nothing (the unseen characters' hints, as an error names them: unseen.py).
"""

from __future__ import annotations

from .fields import typed
from .vocab import Vocabulary


def unseen_note(vocab: Vocabulary, texts: list[str], redo: str = "score", run: str | None = None) -> str:
    """How many characters of `texts` that `scoring.text_bits` scores the model has never seen, and what the
    score did with them ("" when none): left out (a character vocabulary without the unknown symbol),
    or scored as the symbol. Scored are each text's characters as the model reads them but the first
    (normalization may turn it into several: '…' under NFKC is '...'), skipped by index: a copy of each
    text without it would hold `charlm eval`'s files twice over. A sentencepiece vocabulary spells every
    character (byte fallback): nothing to say. `redo`: the command's verb in what to do, `run`: the run
    to fine-tune, where known (`unseen_advice`)."""
    if not vocab.one_char_per_id:
        return ""
    counts: dict[str, int] = {}
    total = 0
    for text in texts:
        text = vocab.normalized(text)  # the same string, not a copy, where it was read normalized (eval's files)
        total += max(len(text) - 1, 0)
        for char, times in vocab.unseen_counts(text, start=1).items():
            counts[char] = counts.get(char, 0) + times
    if not counts:
        return ""
    count = sum(counts.values())
    shown = vocab.names_unseen(counts)  # '瞿' once ',' 3 times (the model writes '，' or '、') ...
    if vocab.unknown_id is not None:
        return (
            f"{count:,} unseen characters scored as the unknown symbol {vocab.chars[vocab.unknown_id]!r} "
            f"({len(counts):,} distinct: {shown}); their bits are the symbol's, which stands for every "
            "character training left out, not the probability of each"
        ) + foreign_note(count, total, redo)
    note = f"{count:,} unseen characters excluded from the score ({len(counts):,} distinct: {shown})"
    return note + unseen_advice(vocab, counts, total, redo, run)


def unseen_advice(
    vocab: Vocabulary, counts: dict[str, int], total: int, redo: str = "score", run: str | None = None
) -> str:
    """What a note on a text's characters the model never saw and left out (`counts`: each with how many
    times the text has it, of the `total` scored) ends with, what to do: where they are most of the text,
    that the figure says little of it (`foreign_note`); where they are a few (the model's own text with some
    it never saw: a quotation, another edition's punctuation), what scores them. One wording for `charlm
    eval`'s note and `charlm inspect`'s, `redo` each one's verb ("score", "inspect"), `run` the run they
    read, named as a shell types it (None: RUN, where the caller has a model, not a run)."""
    if foreign := foreign_note(sum(counts.values()), total, redo):
        return foreign
    base = "RUN" if run is None else typed(run)
    advice = f"; to score them, fine-tune the model on text that has them (charlm train FILE --init-from {base})"
    return advice + (" or write them as the model does" if any(map(vocab.known_forms, counts)) else "")


def foreign_note(unseen: int, total: int, redo: str = "score") -> str:
    """What a note on unseen characters adds where they are most of the text: a model of another
    script (a Chinese run's, the latest, scoring an English file) gave a figure of the few characters
    it knows, which read as the text's own, and what to do (`redo`: the command's verb, "score" it under
    another model); "" where most are known."""
    if unseen * 2 <= total:
        return ""
    return (
        f"; {unseen / total:.0%} of the text is in characters this model never saw in training, so the figure "
        f"says little of it: {redo} it under a model trained on text in its script"
    )
