import re
import string

import pytest
import torch

import charlm.batches
from charlm.batches import Windows, make_streams, min_tokens
from charlm.errors import CharLMError
from charlm.tables import width

from .conftest import REPO

# Where the layout is drawn, and the whole text each drawing cuts into streams (its leftover included).
TIANGAN_DIZHI = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"
DRAWINGS = {
    "charlm/batches.py": (charlm.batches.__doc__, string.ascii_lowercase),
    "docs/how-it-works.md": ((REPO / "docs/how-it-works.md").read_text(encoding="utf-8"), string.ascii_lowercase),
    "docs/how-it-works.zh.md": ((REPO / "docs/how-it-works.zh.md").read_text(encoding="utf-8"), TIANGAN_DIZHI),
}


def test_streams_are_contiguous_rows_and_drop_the_tail():
    streams = make_streams(torch.arange(26), batch_size=5)
    assert streams.shape == (5, 5)
    assert streams[1].tolist() == [5, 6, 7, 8, 9]
    assert streams.flatten().tolist() == list(range(25))


def test_targets_are_inputs_shifted_by_one():
    windows = Windows(make_streams(torch.arange(100), 4), seq_len=6)
    for _ in range(5):
        inputs, targets, _ = windows.next()
        assert torch.equal(targets[:, :-1], inputs[:, 1:])
        assert torch.equal(targets, inputs + 1)  # arange text: the next character is id + 1


def test_each_stream_continues_where_its_last_window_ended():
    windows = Windows(make_streams(torch.arange(100), 4), seq_len=6)
    first, _, fresh_first = windows.next()
    second, _, fresh_second = windows.next()
    assert fresh_first and not fresh_second
    assert torch.equal(second[:, 0], first[:, -1] + 1)


def test_a_pass_covers_every_stream_position_once_and_then_starts_a_fresh_epoch():
    streams = make_streams(torch.arange(4 * 23), 4)  # 23 per stream: 22 inputs, windows 6+6+6+4
    windows = Windows(streams, seq_len=6)
    seen = [windows.next() for _ in range(4)]
    assert [w[0].size(1) for w in seen] == [6, 6, 6, 4]
    assert torch.equal(torch.cat([w[0] for w in seen], 1), streams[:, :-1])
    assert torch.equal(torch.cat([w[1] for w in seen], 1), streams[:, 1:])
    inputs, _, fresh = windows.next()
    assert fresh and windows.epoch == 1 and torch.equal(inputs, seen[0][0])


def test_too_short_text_is_an_error_counted_in_tokens():
    """The ids are tokens (a sentencepiece run's are pieces, fewer than its characters): it said characters."""
    with pytest.raises(CharLMError, match="too short: 7 tokens cannot fill 4 streams of at least 2 tokens"):
        make_streams(torch.arange(7), batch_size=4)
    assert min_tokens(16, 25) == 16 * 26


def drawn_layout(page: str) -> tuple[list[list[str]], list[int], list[str]]:
    """A drawing of the streams, read back: each row's segments between the | marks (the windows, then the
    stream's last token), the step numbers under them, and every [window] the paragraph after it names."""
    lines = page.splitlines()
    first = next(n for n, line in enumerate(lines) if re.match(r"\s*(?:stream|流) 0[:：]", line))
    rows, n = [], first
    while re.match(r"\s*(?:stream|流) \d+[:：]", lines[n]):
        rows.append(["".join(part.split()) for part in re.split(r"[:：]", lines[n], maxsplit=1)[1].split("|")])
        n += 1
    steps = [int(number) for number in re.findall(r"\d+", lines[n])]
    paragraph = []
    for line in lines[n + 2 :]:  # after the step line and the blank line under it
        if not line.strip():
            break
        paragraph.append(line)
    named = ["".join(window.split()) for window in re.findall(r"\[([^\[\]]+)\]", " ".join(paragraph))]
    return rows, steps, named


@pytest.mark.parametrize("where", DRAWINGS)
def test_every_drawing_of_the_streams_and_windows_is_what_the_windows_are(where):
    """batches.py's docstring, how-it-works.md and how-it-works.zh.md each draw the streams and windows
    of a small text and name the first steps' inputs and targets: the drawing and the names are read
    back and checked against make_streams and Windows, so a drawing cannot drift from the code."""
    page, text = DRAWINGS[where]
    rows, steps, named = drawn_layout(page)
    seq_len = len(rows[0][0])
    windows = Windows(make_streams(torch.tensor([ord(char) for char in text]), batch_size=len(rows)), seq_len)

    def spelled(ids: torch.Tensor) -> list[str]:
        return ["".join(map(chr, row.tolist())) for row in ids]

    assert ["".join(row) for row in rows] == spelled(windows.streams), f"{where}: the streams"
    handed = [windows.next()]  # every step of the first epoch: until the windows start afresh
    while not (step := windows.next())[2]:
        handed.append(step)
    assert steps == list(range(len(handed))), f"{where}: the step numbers under the drawing"
    for step, (inputs, targets, _) in enumerate(handed):
        assert [row[step] for row in rows] == spelled(inputs), f"{where}: step {step}'s windows"
    assert [row[-1] for row in rows] == [stream[-1] for stream in spelled(windows.streams)]  # only a target
    assert len(rows[0]) == len(handed) + 1, f"{where}: a segment past the windows, the last token, only"
    # the paragraph names step 0's inputs, its targets, then step 1's: each list in order, maybe cut short
    lists = [spelled(ids) for inputs, targets, _ in handed[:2] for ids in (inputs, targets)]
    at = 0
    for expected in lists:
        taken = 0
        while at < len(named) and taken < len(expected) and named[at] == expected[taken]:
            at, taken = at + 1, taken + 1
        assert taken, f"{where}: the paragraph names {named[at:]}, where {expected} come next"
    assert at == len(named), f"{where}: the paragraph names {named[at:]} past the steps it walks through"


def drawn_columns(page: str) -> tuple[list[int], list[int]]:
    """Where, in terminal cells (a Chinese character takes two), each window of a drawing's first stream
    begins, and where each step label under the streams begins."""
    lines = page.splitlines()
    first = next(n for n, line in enumerate(lines) if re.match(r"\s*(?:stream|流) 0[:：]", line))
    row = lines[first]
    starts = [re.search(r"[:：]\s*", row).end()]
    starts += [bar.end() for bar in re.finditer(r"\|\s*", row)][:-1]  # the last segment is no window
    labels = next(line for line in lines[first:] if not re.match(r"\s*(?:stream|流) \d+[:：]", line))
    return [width(row[:at]) for at in starts], [width(labels[: m.start()]) for m in re.finditer(r"step |第", labels)]


@pytest.mark.parametrize("where", DRAWINGS)
def test_every_drawings_step_labels_begin_where_their_windows_do(where):
    """The "step 1" of how-it-works.md and batches.py began two columns right of its window: under its
    second character, as if step 1 fed [d e]. Each label now begins where its window does."""
    windows, labels = drawn_columns(DRAWINGS[where][0])
    assert labels == windows, f"{where}: step labels at columns {labels}, windows at {windows}"
