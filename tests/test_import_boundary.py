"""The offline path imports no framework: every module outside the short list of framework modules, and
``python -m tinysaver_det sweep`` from two results jsons, run without torch, cv2, Ultralytics or mmdet loaded.

Each module is imported in a fresh interpreter, so that one module's imports cannot hide another's.
"""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinysaver_det

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "cv2", "ultralytics", "mmdet", "mmengine", "mmcv")

#: The modules that run models or decode images, and so may import a framework (lazily where they can).
FRAMEWORK_MODULES = {
    "tinysaver_det.__main__",  # runs the command line when imported; checked through a subcommand below
    "tinysaver_det.adapters.mmdet",
    "tinysaver_det.adapters.ultralytics",
    "tinysaver_det.adapters.ultralytics_features",  # the saver-feature capture (torch hooks)
    "tinysaver_det.adapters.ultralytics_predictor",  # the Ultralytics predictor and its one NMS call
    "tinysaver_det.api",  # the front door: its results are Ultralytics Results (tinysaver_det.TinySaver loads it lazily)
    "tinysaver_det.detection.images",
    "tinysaver_det.detection.runner",
    "tinysaver_det.flops",
}
FRAMEWORK_PACKAGES = ("tinysaver_det.mmdet",)  # the mmdet plug-in: importing it registers into mmdet


def offline_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(tinysaver_det.__path__, "tinysaver_det.")]
    return ["tinysaver_det"] + sorted(
        n for n in names if n not in FRAMEWORK_MODULES and not n.startswith(FRAMEWORK_PACKAGES)
    )


def loaded_frameworks(code: str, *args: str) -> list[str]:
    """Run ``code`` in a fresh interpreter, then list the framework modules it left in ``sys.modules``."""
    probe = f"{code}\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FRAMEWORKS)!r}))"
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_the_offline_list_covers_the_studies_and_the_offline_commands():
    modules = offline_modules()
    for name in ("tinysaver_det.core.cascade_model", "tinysaver_det.classification", "tinysaver_det.detection.coco.accumulate",
                 "tinysaver_det.detection.cache", "tinysaver_det.detection.studies.thresholds",
                 "tinysaver_det.detection.studies.router_comparison", "tinysaver_det.detection.studies.depths",
                 "tinysaver_det.detection.studies.operating_points", "tinysaver_det.detection.studies.benchmark_table",
                 "tinysaver_det.plots", "tinysaver_det.cli.sweep", "tinysaver_det.cli.table", "tinysaver_det.cli.pick",
                 "tinysaver_det.cli.routers", "tinysaver_det.cli.multistage_front", "tinysaver_det.cli.select_saver"):
        assert name in modules


@pytest.mark.parametrize("module", offline_modules())
def test_an_offline_module_imports_no_framework(module):
    assert loaded_frameworks(f"import {module}") == []


def test_the_sweep_subcommand_from_two_results_jsons_loads_no_framework(tmp_path):
    box = {"area": 100.0, "iscrowd": 0, "category_id": 1}
    annotations = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{**box, "id": i, "image_id": i, "bbox": [10, 10, 10, 10]} for i in (1, 2, 3)],
    }
    saver = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.9},
             {"image_id": 2, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.2}]
    base = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.8} for i in (1, 2, 3)]
    for name, data in (("ann", annotations), ("saver", saver), ("base", base)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    argv = ["sweep", "--ann", str(tmp_path / "ann.json"), "--saver-json", str(tmp_path / "saver.json"),
            "--base-json", str(tmp_path / "base.json"), "--saver-gflops", "1", "--base-gflops", "10",
            "--thresholds", "0", "0.5", "1.01", "--out", str(tmp_path / "out")]
    code = "import sys\nfrom tinysaver_det.cli import main\nassert main(sys.argv[1:]) == 0"
    assert loaded_frameworks(code, *argv) == []
    rows = (tmp_path / "out" / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("t,exit_ratio,AP") and len(rows) == 4
    # t = 0: the saver answers all three images and misses image 3; t = 1.01: the base, right everywhere.
    assert float(rows[1].split(",")[2]) < 1.0 and float(rows[3].split(",")[2]) == pytest.approx(1.0)


def test_the_pick_subcommand_writes_operating_points_and_loads_no_framework(tmp_path):
    """``pick`` reads each model's settings from the provenance file beside its predictions: the
    operating point files it writes carry them, and no model (no framework) is loaded for it."""
    rng = np.random.default_rng(0)
    n = 12
    boxes = [[10.0, 10.0, 30.0, 30.0]]
    annotations = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in range(1, n + 1)],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": i, "image_id": i, "bbox": [10, 10, 20, 20], "area": 400.0, "iscrowd": 0,
                         "category_id": 1} for i in range(1, n + 1)],
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    settings = {
        "saver": {"name": "saver.pt", "weights": str(tmp_path / "saver.pt"), "sha256": "a" * 64, "imgsz": 320,
                  "category_ids": [1], "conf": 0.001, "iou": 0.7, "max_det": 300, "device": "cpu"},
        "base": {"name": "base", "weights": str(tmp_path / "base.py"), "config_sha256": "b" * 64,
                 "checkpoint": str(tmp_path / "base.pth"), "sha256": "c" * 64, "category_ids": [1], "device": "cpu"},
    }
    for role, gflops in (("saver", 1.0), ("base", 10.0)):
        with (tmp_path / f"{role}_predictions.jsonl").open("w") as stream:
            for i in range(1, n + 1):
                right = role == "base" or i % 3 != 0  # the saver misses every third image, with a low score
                score = float(rng.uniform(0.6, 0.9) if right else rng.uniform(0.06, 0.2))
                box = boxes if right else [[40.0, 40.0, 60.0, 60.0]]
                stream.write(json.dumps({"image_id": i, "boxes": box, "scores": [score], "category_ids": [1],
                                         "gflops": gflops, "seconds": gflops / 1000}) + "\n")
        (tmp_path / f"{role}_predictions.run.json").write_text(json.dumps({"model": settings[role]}))
    out = tmp_path / "pick"
    argv = ["pick", "--ann", str(tmp_path / "ann.json"), "--model", f"saver={tmp_path / 'saver_predictions.jsonl'}",
            "--model", f"base={tmp_path / 'base_predictions.jsonl'}", "--max-drop", "0.0", "--gflops", "2",
            "--bootstrap", "5", "--out", str(out)]
    code = "import sys\nfrom tinysaver_det.cli import main\nassert main(sys.argv[1:]) == 0"
    assert loaded_frameworks(code, *argv) == []
    from tinysaver_det.operating_point import read_operating_point

    drop, budget = (read_operating_point(out / f"operating_point_{name}_GFLOPs.json") for name in ("max_drop_0", "budget_2"))
    assert read_operating_point(out / "operating_point.json") == drop  # the first target's
    assert budget.saver == {"weights": settings["saver"]["weights"], "sha256": "a" * 64, "imgsz": 320,
                            "predict": {"conf": 0.001, "iou": 0.7, "max_det": 300}, "class_map": {}}
    assert budget.base == {key: settings["base"][key] for key in ("weights", "config_sha256", "checkpoint", "sha256")}
    assert budget.calibration["gflops_per_image"] <= 2 < drop.calibration["gflops_per_image"]
    assert budget.calibration["AP"] < drop.calibration["AP"] == pytest.approx(1.0)
