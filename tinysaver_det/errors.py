"""The one error type for a wrong input, so that a command line can tell it from a bug.

Library code raises :class:`TinySaverInputError` (or ``FileNotFoundError``) when a file, a setting or a
run directory is wrong, with a message that names the offending file or value. ``tools/`` print such
errors as ``error: <message>`` with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable


class TinySaverInputError(ValueError):
    """A user input is wrong; the message names it and says what is wrong.

    A ``ValueError`` subclass, so callers that catch ``ValueError`` keep working.
    """


INPUT_ERRORS = (FileNotFoundError, TinySaverInputError)


def exit_code_of(main: Callable[..., object], *args) -> int:
    """Run a tool's ``main(*args)`` as a command does: a wrong input prints ``error: <message>`` to stderr
    and gives exit code 2, without a traceback; a non-integer result (e.g. a study object) means 0.

    >>> def main(argv=None):
    ...     raise TinySaverInputError("threshold must be >= 0, got -1")
    >>> exit_code_of(main)  # prints "error: threshold must be >= 0, got -1" to stderr
    2
    """
    try:
        result = main(*args)
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
