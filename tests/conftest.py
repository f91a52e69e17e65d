"""Shared fixtures: the demo models and datasets from the assets folder (``TINYSAVER_ASSETS``).

A fixture or test that finds an asset missing is skipped with the reason (the hooks in the repository
root's ``conftest.py``).
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network checks

import cv2
import numpy as np
import pytest

from tinysaver_det import assets
from tinysaver_det.detection.dataset import CocoDataset


@pytest.fixture(scope="session")
def assets_folder() -> Path:
    """The assets folder; a test that needs it only indirectly (a tool's demo defaults, a config naming a
    demo model) asks for it, so that without assets it is skipped rather than failed."""
    return assets.assets_root()


@pytest.fixture(scope="session")
def demo_dataset():
    return CocoDataset(assets.asset_path(assets.DEMO_ANNOTATIONS), assets.asset_path(assets.DEMO_IMAGES))


@pytest.fixture(scope="session")
def demo_images(demo_dataset):
    """``take(n)``: the first ``n`` demo val images, decoded, and their ids: ``(images, image_ids)``."""
    from tinysaver_det.detection.images import load_image

    def take(n: int):
        infos = demo_dataset.images[:n]
        return [load_image(demo_dataset.path(i)) for i in infos], [i.image_id for i in infos]

    return take


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


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def load_script():
    """Import a repository script (``tools/x.py``, ``examples/y.py``) as a module, to call its ``main``."""

    def load(relative: str):
        path = REPO / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def demo_n(demo_dataset):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector

    return UltralyticsDetector(assets.demo_weights("n"), demo_dataset.category_ids_by_name)


@pytest.fixture(scope="session")
def demo_slice(tmp_path_factory, demo_dataset, demo_saver, demo_n, demo_base):
    """The first 32 demo val images: their own annotation file and the demo ladder's cached predictions.

    Each model runs once per session (``predict_dataset``, one batch of 32); tests then load the
    ``*_predictions.jsonl`` files like the tools do.
    """
    from types import SimpleNamespace

    from tinysaver_det.detection.dataset import restrict_annotations
    from tinysaver_det.detection.runner import predict_dataset

    root = tmp_path_factory.mktemp("demo_slice")
    image_ids = demo_dataset.image_ids[:32]
    data = restrict_annotations(json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text()), image_ids)
    annotations = root / "instances_slice.json"
    annotations.write_text(json.dumps(data))
    # The predictions are made on the slice's own annotation file, the one the tools are given with them
    # (they refuse predictions whose recorded annotation file has other content).
    dataset = CocoDataset(annotations, assets.asset_path(assets.DEMO_IMAGES))
    models = {"pico": demo_saver, "n": demo_n, "s": demo_base}
    predictions = {
        name: predict_dataset(model, dataset, root / f"{name}_predictions.jsonl", batch_size=32, progress=False)
        for name, model in models.items()
    }
    return SimpleNamespace(dataset=dataset, annotations=annotations, predictions=predictions, models=models)


@pytest.fixture(scope="session")
def eval_coco_tool(load_script, assets_folder):
    """``tools/eval_coco.py`` as a module, to call its ``main(argv)`` in-process (its defaults are demo assets)."""
    return load_script("tools/eval_coco.py")


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    """12 demo val images plus one flat gray image on which the base finds no box at all."""
    root = tmp_path_factory.mktemp("small")
    (root / "images").mkdir()
    data = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    images = data["images"][:12]
    for info in images:
        shutil.copy(assets.asset_path(assets.DEMO_IMAGES) / info["file_name"], root / "images" / info["file_name"])
    cv2.imwrite(str(root / "images" / "gray.jpg"), np.full((256, 256, 3), 128, np.uint8))
    images.append({"id": 9999, "file_name": "gray.jpg", "width": 256, "height": 256})
    ids = {i["id"] for i in images}
    data.update(images=images, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
    (root / "ann.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def full_run(small_set, tmp_path_factory, eval_coco_tool):
    out = tmp_path_factory.mktemp("run")
    args = ["--images", str(small_set / "images"), "--ann", str(small_set / "ann.json"), "--t", "0.25",
            "--batch", "5", "--out", str(out), "--full", "--quiet"]
    assert eval_coco_tool.main(args) == 0
    return out


@pytest.fixture(scope="session")
def coco_subset(tmp_path_factory):
    """``make(n)``: the annotation file of the first ``n`` real COCO-subset images by id (their images and
    annotations alone), written once per ``n``."""
    from tinysaver_det.detection.dataset import restrict_annotations

    data = json.loads(assets.asset_path(assets.COCO_ANNOTATIONS).read_text())
    made = {}

    def make(n: int) -> Path:
        if n not in made:
            ids = sorted(info["id"] for info in data["images"])[:n]
            made[n] = tmp_path_factory.mktemp(f"coco{n}") / f"instances_{n}.json"
            made[n].write_text(json.dumps(restrict_annotations(data, ids)))
        return made[n]

    return make


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory):
    """A 10-frame 64x64 video at 10 fps, frame k the k-th demo val image resized, and its frames as
    OpenCV decodes them (a lossy codec: compare against these, not the images): ``(path, frames)``."""
    from tests.videos import read_video, write_video

    images = [cv2.resize(cv2.imread(str(path)), (64, 64))
              for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:10]]
    video = write_video(tmp_path_factory.mktemp("video") / "clip.avi", images, fps=10)
    frames, _ = read_video(video)
    assert len(frames) == 10
    return video, frames
