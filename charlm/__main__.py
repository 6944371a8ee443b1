"""The `charlm` command, and `python -m charlm`."""

import sys


def main() -> None:
    """Ctrl-C while the command's modules are still loading (torch takes seconds) exits as it does later:
    status 130, no traceback. Hence the import here and not at the top."""
    try:
        from .cli import main as command_line
    except KeyboardInterrupt:
        sys.exit(130)
    command_line()


if __name__ == "__main__":
    main()
