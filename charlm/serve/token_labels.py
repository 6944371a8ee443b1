"""What the API calls a token: the text each piece of a model's vocabulary writes, the name
`top_logprobs` gives it, and the bytes that name stands for (each entry's `bytes`). The name of a byte
piece is written and read back here, in one file, so a change to one side cannot miss the other. Also a
model's tokens as `/v1/models` lists them and `/tokenize` gives a text's, the ids `logit_bias` takes."""

from __future__ import annotations

from collections.abc import Callable

from ..model import CharLM
from ..vocab import UNSEEN, Vocabulary
from .config import ServeConfig
from .protocol import PROMPT_LENGTH, check_length

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


def known_characters(model: CharLM) -> str | None:
    """The characters a character model knows, for the page to say which of a prompt's it does not;
    None for a sentencepiece model, whose byte fallback spells any character."""
    return "".join(model.vocab.chars) if model.vocab.one_char_per_id else None


def unseen_hints(model: CharLM) -> dict | None:
    """How the page names a character a character model does not know, in a prompt or the ban box, as
    charlm does (`Vocab.unseen_hints`: ':' (did you mean '：'?)); None for a sentencepiece model."""
    return model.vocab.unseen_hints() if model.vocab.one_char_per_id else None


def known_pieces(model: CharLM) -> list[str | list[int]] | None:
    """A sentencepiece model's pieces in id order (`piece_text`), so that a client finds the ids
    `logit_bias` takes, as `known_characters` gives a character model's; None for a character model."""
    vocab = model.vocab
    return None if vocab.one_char_per_id else [piece_text(vocab, i) for i in range(len(vocab))]


def tokenized(model: CharLM, text: str, with_pieces: bool, param: str, config: ServeConfig) -> list:
    """`/tokenize`: the ids `text` is read as, as a prompt is read (normalized, within --max-prompt then
    too); null for a character a character model has never seen (it has no id to bias); `with_pieces`:
    each as {id, piece}."""
    vocab = model.vocab
    read = vocab.normalized(text)  # a character model's ids are its characters, one by one
    check_length(len(read), config, PROMPT_LENGTH["prompt"], param, vocab.normalize)
    tokens = [None if token == UNSEEN else token for token in vocab.encode_array(read).tolist()]
    if not with_pieces:
        return tokens
    pieces = [read[i] if token is None else piece_text(vocab, token) for i, token in enumerate(tokens)]
    return [{"id": token, "piece": piece} for token, piece in zip(tokens, pieces)]
