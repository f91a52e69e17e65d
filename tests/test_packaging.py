"""A non-editable install gives the ``tinysaver`` command and everything it runs, without ``tools/``.

The package is installed with ``pip install --no-deps`` from a copy of the repository that has no
``tools/`` into a fresh virtualenv. That virtualenv sees the tested stack (torch, Ultralytics, ...)
through a ``.pth`` line naming this interpreter's site-packages, so nothing is downloaded; the
package itself must come from the fresh install, not from the checkout.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tinysaver_det import assets

REPO = Path(__file__).resolve().parent.parent
_SKIP = {".git", ".venv", "tools", "runs", "build", "dist", ".pytest_cache", "__pycache__", "work_dirs"}


def _copy_repository(target: Path) -> Path:
    shutil.copytree(REPO, target, ignore=lambda folder, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")])
    assert not (target / "tools").exists()
    return target


@pytest.mark.slow
def test_a_fresh_virtualenv_gets_a_working_tinysaver_command(tmp_path):
    source = _copy_repository(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # a plain path line: the tested stack (pip and setuptools included) becomes importable, but this checkout's
    # editable-install hook does not run
    (Path(purelib) / "tested_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source)], check=True, cwd=tmp_path)

    env = {**os.environ, "YOLO_OFFLINE": "1", "TINYSAVER_ASSETS": str(assets.assets_root())}
    env.pop("PYTHONPATH", None)
    located = subprocess.run([str(python), "-c", "import tinysaver_det; print(tinysaver_det.__file__)"],
                             check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert located.startswith(purelib), located  # the installed copy, not the checkout

    command = venv / "bin" / "tinysaver"
    listing = subprocess.run([str(command), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    for subcommand in ("eval", "predict", "sweep", "table", "pick", "routers", "select-saver"):
        assert subcommand in listing.stdout

    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:4]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "out"
    run = subprocess.run([str(command), "predict", "--source", str(images), "--saver", "demo:pico", "--base", "demo:s",
                          "--t", "0.25", "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 4 and "4 images" in run.stdout
    module = subprocess.run([str(python), "-m", "tinysaver_det", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, env=env)
    assert module.returncode == 0 and "predict" in module.stdout  # python -m tinysaver_det is the same command
