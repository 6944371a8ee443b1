import pytest
import torch

from charlm.batches import Windows, make_streams, min_tokens
from charlm.errors import CharLMError


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


def test_the_module_docstrings_alphabet_example_is_what_the_windows_are():
    """batches.py (and docs/how-it-works.md) draw "abc...z", batch 5, window 2: this is that drawing."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    windows = Windows(make_streams(torch.tensor([ord(c) for c in letters]), batch_size=5), seq_len=2)

    def spelled(rows: torch.Tensor) -> list[str]:
        return ["".join(map(chr, row.tolist())) for row in rows]

    assert spelled(windows.streams) == ["abcde", "fghij", "klmno", "pqrst", "uvwxy"]  # "z" dropped
    steps = [windows.next() for _ in range(3)]
    assert [(spelled(i), spelled(t), fresh) for i, t, fresh in steps[:2]] == [
        (["ab", "fg", "kl", "pq", "uv"], ["bc", "gh", "lm", "qr", "vw"], True),
        (["cd", "hi", "mn", "rs", "wx"], ["de", "ij", "no", "st", "xy"], False),
    ]
    assert windows.epoch == 1 and steps[2][2] and spelled(steps[2][0]) == spelled(steps[0][0])  # "e" only a target
