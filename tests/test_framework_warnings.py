"""Warnings that say nothing to the user are silenced where the frameworks load, and only those."""

import subprocess
import sys
import warnings

import pytest

from tinysaver_det.framework_warnings import silence_framework_warnings

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_loading_an_mmdet_scoped_config_prints_no_pkg_resources_warning():
    code = ("import tinysaver_det.adapters.mmdet\n"
            "from mmengine.config import Config\n"
            "Config.fromfile('configs/tinysaver_yolov8n_rtmdet-l_coco.py')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert "pkg_resources" not in run.stderr and "Warning" not in run.stderr, run.stderr


def test_only_the_known_messages_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_framework_warnings()
        warnings.warn("pkg_resources is deprecated as an API. See ...", UserWarning)
        warnings.warn("`torch.cuda.amp.autocast(args...)` is deprecated. Please use ...", FutureWarning)
        warnings.warn("something the user should read", UserWarning)
    assert [str(w.message) for w in caught] == ["something the user should read"]
