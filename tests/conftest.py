"""Shared fixtures: the demo models and datasets from the assets folder (``TINYSAVER_ASSETS``)."""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network checks

import pytest

from tinysaver_det import assets
from tinysaver_det.detection.dataset import CocoDataset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def eval_coco_tool():
    """``tools/eval_coco.py`` as a module, to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location("eval_coco", REPO / "tools" / "eval_coco.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo_dataset():
    return CocoDataset(assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES))


@pytest.fixture(scope="session")
def coco_annotations():
    return assets.asset_path(assets.COCO_ANNOTATIONS)


@pytest.fixture(scope="session")
def demo_saver(demo_dataset):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), demo_dataset.category_ids_by_name)


@pytest.fixture(scope="session")
def demo_base(demo_dataset):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(assets.asset_path(assets.DEMO_BASE), demo_dataset.category_ids_by_name)
