import pytest

from tinysaver_det import assets


def test_env_var_selects_the_assets_folder(monkeypatch, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "x.pt").write_bytes(b"")
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path))
    assert assets.asset_path("demo/x.pt") == tmp_path / "demo" / "x.pt"


def test_missing_asset_names_the_file_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path))
    with pytest.raises(assets.AssetNotFoundError, match=r"missing asset 'demo/weights/nope.pt'.*TINYSAVER_ASSETS"):
        assets.asset_path("demo/weights/nope.pt")


def test_env_var_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "absent"))
    with pytest.raises(assets.AssetNotFoundError, match="TINYSAVER_ASSETS="):
        assets.assets_root()


def test_default_assets_are_found():
    assert (assets.assets_root() / "MANIFEST.md").is_file()


def test_without_assets_the_suite_skips_what_needs_them_with_the_reason(tmp_path):
    """A machine without the assets runs the suite to a clean end: each test or doctest that needs one
    (through a fixture, its body or a parametrize list) is skipped naming what is missing, none errors."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    absent = tmp_path / "absent"
    selected = [
        "tests/test_bad_inputs.py::test_an_undecodable_file_is_named",  # parametrized with demo bytes
        "tests/test_bad_inputs.py::test_png_alpha_is_dropped_and_the_colour_channels_kept",  # the body reads one
        "tests/test_cascade.py::test_max_confidence_is_selectable",  # the demo models, module-scoped fixtures
        "tinysaver_det/assets.py",  # a doctest naming a demo model
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", "", *selected],
        cwd=repo, env={**os.environ, assets.ASSETS_ENV: str(absent)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # the two undecodable files made of literal bytes need no asset and still run
    assert result.stdout.strip().splitlines()[-1].startswith("2 passed, 4 skipped in"), result.stdout
    reason = f"missing asset: {assets.ASSETS_ENV}={str(absent)!r} is not a directory"
    assert "SKIPPED [4] conftest.py:" in result.stdout and reason in result.stdout, result.stdout
