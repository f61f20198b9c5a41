"""How a command reports a failure: one line on stderr, never a traceback."""

from __future__ import annotations

import sys

# Errors a user's input can cause (a missing file, an unreadable photo, a bad option value, a
# detector this OpenCV lacks, weights that cannot be downloaded): their message says it all.
USER_ERRORS = (OSError, ValueError, RuntimeError, ImportError)


class CommandError(Exception):
    """A problem with a command's input, described for the user."""


def error_message(error: BaseException) -> str:
    """One line that names the problem.

    Examples
    --------
    >>> error_message(FileNotFoundError(2, "No such file or directory", "model.joblib"))
    "'model.joblib': No such file or directory"
    >>> error_message(KeyError("x"))
    "unexpected KeyError: 'x' (rerun with --traceback for where)"
    """
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{str(error.filename)!r}: {error.strerror}"
    elif isinstance(error, (CommandError, *USER_ERRORS)):
        message = str(error)
    else:
        message = f"unexpected {type(error).__name__}: {error} (rerun with --traceback for where)"
    return " ".join(message.split())


def report_error(command: str, error: BaseException) -> int:
    """Print ``error`` as one line on stderr and return the exit status, 1."""
    print(f"fusionrec {command}: error: {error_message(error)}", file=sys.stderr)
    return 1
