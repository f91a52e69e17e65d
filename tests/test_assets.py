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
