"""What the API calls a token: the text each piece of a model's vocabulary writes, the name
`top_logprobs` gives it, and the bytes that name stands for (each entry's `bytes`). The name of a byte
piece is written and read back here, in one file, so a change to one side cannot miss the other."""

from __future__ import annotations

from collections.abc import Callable

from ..vocab import Vocabulary

BYTES = "bytes:"  # OpenAI's name of a token that is part of a character: bytes:\\xe4


def piece_text(vocab: Vocabulary, token: int) -> str | list[int]:
    """The text token `token` writes, or, for a byte piece that is part of a character, its bytes (as
    llama.cpp's /tokenize gives them): a character, a piece's characters, "" for a control piece."""
    text = vocab.token_text(token)
    return list(text) if isinstance(text, bytes) else text


def token_label(vocab: Vocabulary) -> Callable[[int], str]:
    """A token's text as `top_logprobs` names it: a byte piece that is part of a character as OpenAI's
    legacy API names such a token, `bytes:\\xe4` (as U+FFFD, every such byte would have the one name), and a
    control piece, which writes nothing, by its name (`</s>`), as OpenAI's `<|endoftext|>`."""
    if vocab.one_char_per_id:
        return vocab.chars.__getitem__
    labels = []
    for token in range(len(vocab)):
        text = piece_text(vocab, token)
        if isinstance(text, list):
            text = BYTES + "".join(f"\\x{b:02x}" for b in text)
        labels.append(text or vocab.token_name(token))
    return labels.__getitem__


def label_bytes(label: str) -> bytes:
    """The bytes a token's label (`token_label`) stands for: its text's, or a byte piece's (`bytes:\\xe4`)."""
    if label.startswith(BYTES + "\\x"):
        return bytes.fromhex(label[len(BYTES) :].replace("\\x", ""))
    return label.encode()


def token_bytes(vocab: Vocabulary) -> Callable[[int], bool]:
    """Whether a token is a byte piece (of a sentencepiece model's byte fallback)."""
    return set(vocab.byte_piece_ids().values()).__contains__
