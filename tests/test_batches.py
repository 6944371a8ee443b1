import pytest
import torch

from charlm.batches import Windows, make_streams, min_chars
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
    assert [w[0].size(1) for w in Windows(streams, 6)] == [6, 6, 6, 4]


def test_too_short_text_is_an_error():
    with pytest.raises(CharLMError, match="too short"):
        make_streams(torch.arange(7), batch_size=4)
    assert min_chars(16, 25) == 16 * 26
