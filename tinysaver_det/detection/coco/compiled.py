"""The optional numba compilation of the evaluation's inner loops (the ``fast`` extra).

:func:`compiled` is the one way the package compiles a loop: numba's ``njit`` on the first call,
cached on disk (``cache=True``, so later processes load it), releasing the GIL (``nogil=True``, so
threads can run compiled loops side by side). Without numba the function stays as written, and
its callers take their numpy path instead of calling it (:data:`AVAILABLE` tells them).
"""

from __future__ import annotations

try:  # optional: the compiled loops
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

__all__ = ["AVAILABLE", "compiled"]

#: Whether numba is installed, i.e. whether :func:`compiled` functions are compiled.
AVAILABLE = numba is not None


def compiled(function):
    """``function`` compiled by numba on its first call, or as written without numba (see the module)."""
    return numba.njit(cache=True, nogil=True)(function) if AVAILABLE else function
