"""Characters <-> ids. The vocabulary is saved with the model, so a checkpoint decodes on its own."""

from __future__ import annotations

import torch

from .errors import CharLMError


class Vocab:
    """The exact set of characters of a text, sorted so the same text always gives the same ids."""

    def __init__(self, chars: str | list[str]):
        self.chars = list(chars)
        if not self.chars:
            raise CharLMError("the vocabulary is empty: the corpus has no characters")
        self.index = {c: i for i, c in enumerate(self.chars)}
        if len(self.index) != len(self.chars):
            raise CharLMError("the vocabulary repeats a character; the checkpoint is damaged")

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """Text -> int64 ids; characters the model has never seen are an error that names them."""
        missing = self.unknown(text)
        if missing:
            shown = " ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise CharLMError(
                f"{what}: {len(missing)} character(s) the model has never seen: {shown}; "
                "use only characters from the training text"
            )
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def to_string(self) -> str:
        """Stored in checkpoints as one string: safe to load, nothing to unpickle."""
        return "".join(self.chars)

    @classmethod
    def from_string(cls, chars: str) -> Vocab:
        return cls(list(chars))
