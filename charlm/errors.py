"""The one exception type a user sees: a one-line message saying what is wrong and what to do."""


class CharLMError(Exception):
    """Bad input or a state charlm cannot continue from. The CLI prints it as one line, no traceback."""


class SaidElsewhere(CharLMError):
    """An error another process of a torchrun job says: this one exits with status 1 and no word, so a
    user with 8 GPUs reads it once."""
