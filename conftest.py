"""Suite-wide hooks (the tests under ``tests/`` and the package's doctests): a missing asset is a skip.

The demo models, demo images and COCO subset live outside the repository (``TINYSAVER_ASSETS``). Where
they are missing (no assets folder, or a file not in it), a test or doctest that needs one is skipped
with the reason, instead of erroring: the suite still runs what needs no asset and says what it left.
"""

import doctest

import pytest

from tinysaver_det import assets


def missing_asset(error: BaseException) -> assets.AssetNotFoundError | None:
    """The missing-asset error behind ``error``: itself, a doctest's unexpected exception, or its cause."""
    while error is not None:
        if isinstance(error, assets.AssetNotFoundError):
            return error
        error = error.exc_info[1] if isinstance(error, doctest.UnexpectedException) else error.__cause__
    return None


@pytest.hookimpl(wrapper=True)
def skip_a_missing_asset(item):
    """Run one phase of a test; a missing asset met in it (in a fixture's setup, the body or a doctest) is a skip."""
    try:
        return (yield)
    except Exception as error:
        missing = missing_asset(error)
        if missing is not None:
            pytest.skip(f"missing asset: {missing}")
        raise


pytest_runtest_setup = skip_a_missing_asset
pytest_runtest_call = skip_a_missing_asset
