"""The one error type for a wrong input, so that a command line can tell it from a bug.

Library code raises :class:`TinySaverInputError` (or ``FileNotFoundError``) when a file, a setting or a
run directory is wrong, with a message that names the offending file or value. The command line
(:func:`exit_code_of`) prints such errors as ``error: <message>`` with exit code 2, and so the other
``OSError`` s too (no space left, no permission, not a directory: on an input or an output, the
message names the file); Ctrl-C and SIGTERM end with ``interrupted`` and exit code 130 (a run's own
message says how to resume it). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable


class TinySaverInputError(ValueError):
    """A user input is wrong; the message names it and says what is wrong.

    A ``ValueError`` subclass, so callers that catch ``ValueError`` keep working.
    """


class EveryRankInputError(TinySaverInputError):
    """The same input error raised on every rank of a ``torchrun`` job at once (each rank learned the
    others' errors through the process group): one rank prints it (``printed_here``: rank 0), so a job
    of N processes says it once, not N times. The exit code is 2 on every rank."""

    def __init__(self, message: str, *, printed_here: bool) -> None:
        super().__init__(message)
        self.printed_here = printed_here


INPUT_ERRORS = (FileNotFoundError, TinySaverInputError)


def exit_code_of(main: Callable[..., object], *args) -> int:
    """Run a tool's ``main(*args)`` as a command does: a wrong input prints ``error: <message>`` to stderr
    and gives exit code 2, without a traceback; a non-integer result (e.g. a study object) means 0.

    >>> def main(argv=None):
    ...     raise TinySaverInputError("threshold must be >= 0, got -1")
    >>> exit_code_of(main)  # prints "error: threshold must be >= 0, got -1" to stderr
    2
    """
    previous = _terminate_as_interrupt()
    try:
        result = main(*args)
    except INPUT_ERRORS as error:
        if not isinstance(error, EveryRankInputError) or error.printed_here:
            print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # no space, no permission, not a directory...: on an input or an output
        print(f"error: {os_error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, also during the imports inside main
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else 0


def os_error_message(error: OSError) -> str:
    """One line naming the file and what the system said: ``cannot write runs/x/records.jsonl: No space
    left on device``.

    >>> os_error_message(PermissionError(13, "Permission denied", "runs/x"))
    'runs/x: Permission denied'
    """
    if error.filename is None:
        return str(error.strerror or error)
    where = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else str(error.filename)
    return f"{where}: {error.strerror or error}"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _terminate_as_interrupt():
    """Handle SIGTERM (``kill``, a job scheduler's stop) as Ctrl-C, so that a stopped run ends the way
    an interrupted one does (its message says how to resume). Only in the main thread; returns the
    previous handler to put back, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)
