"""The one error type for a wrong input, so that a command line can tell it from a bug.

Library code raises :class:`TinySaverInputError` (or ``FileNotFoundError``) when a file, a setting or a
run directory is wrong, with a message that names the offending file or value. ``tools/`` print such
errors as ``error: <message>`` with exit code 2; anything else is a bug and keeps its traceback.
"""


class TinySaverInputError(ValueError):
    """A user input is wrong; the message names it and says what is wrong.

    A ``ValueError`` subclass, so callers that catch ``ValueError`` keep working.
    """
