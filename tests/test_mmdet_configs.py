"""Every shipped mmdet config runs: mmengine's Runner builds it and ``Runner.test()`` runs on two real
COCO images; and a checkpoint of the base alone (official model-zoo weights) loads into the base,
through the Runner's ``load_from`` as mmdet's ``tools/test.py CONFIG CHECKPOINT`` does, without
missing or unexpected keys.

The saver is the shipped demo YOLO (``yolov8n.pt`` would need a download) and the test scale is 320
(CPU). Co-DINO's code is not in the mmdet wheel, so its configs run with the base swapped for
RTMDet-tiny: the Runner, the loops, the data and the evaluators are still the config's own, which is
what mmengine refused before (``train_dataloader, train_cfg, and optim_wrapper should be either all
None or not None``).
"""

import json
import os
import subprocess
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tinysaver_det import assets

pytest.importorskip("mmdet")
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.runner.checkpoint import load_state_dict  # noqa: E402

import tinysaver_det.mmdet  # noqa: E402,F401  (registers the plug-in)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SUBSET_CONFIG = CONFIGS / "tinysaver_demo_rtmdet-tiny_coco-subset.py"
CODINO_CONFIG = CONFIGS / "tinysaver_yolov8n_codino-swin-l_coco.py"
OFFICIAL_CODINO = "tinysaver_yolov8n_codino-swin-l_official_coco.py"
PUBLISHED_CODINO = "projects/CO-DETR/configs/codino/co_dino_5scale_swin_l_16xb1_16e_o365tococo.py"
N_IMAGES = 2

init_default_scope("mmdet")

# A stand-in for the published Co-DINO config in a fake mmdetection checkout: a small mmdet model, and
# the published config's settings that matter to the run (fine-tuning from a URL, its own imports).
STAND_IN = """
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['projects.CO-DETR.codetr'], allow_failed_imports=False)
load_from = 'https://download.invalid/co_dino_5scale_swin_large_22e_o365.pth'
custom_hooks = []
"""


@pytest.fixture(scope="module")
def two_images(coco_subset):
    """The two first COCO-subset images by id, in an annotation file of their own, and their ids."""
    path = coco_subset(N_IMAGES)
    return path, sorted(image["id"] for image in json.loads(path.read_text())["images"])


@pytest.fixture(scope="module")
def split_threshold(two_images):
    """The higher of the demo saver's confidences on the two images: one image exits with the saver's
    boxes (so CocoMetric has detections to score whatever a random base predicts), the other runs the base."""
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.core import image_confidence
    from tinysaver_det.detection.dataset import CocoDataset
    from tinysaver_det.detection.images import load_image

    dataset = CocoDataset(two_images[0], assets.asset_path(assets.COCO_IMAGES))
    options = dict(Config.fromfile(SUBSET_CONFIG).model.saver)
    saver = UltralyticsDetector(options.pop("weights"), dataset.category_ids_by_name, **options)
    prediction = saver.predict([load_image(dataset.path(info)) for info in dataset.images], dataset.image_ids)
    confidences = sorted(image_confidence(d.scores) for d in prediction.detections)
    assert 0 < confidences[0] < confidences[1]
    return confidences[1]


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """An mmdetection checkout holding a stand-in for the published Co-DINO config, named by
    MMDET_CHECKOUT and importable (``projects.CO-DETR.codetr``).

    The ``projects`` modules imported before (a real checkout on PYTHONPATH, whose import registers
    CoDETR's classes once per process) are put back afterwards, and only the stand-in's are dropped."""
    checkout = tmp_path / "mmdetection"
    config = checkout / PUBLISHED_CODINO
    config.parent.mkdir(parents=True)
    config.write_text(STAND_IN)
    (checkout / "projects" / "CO-DETR" / "codetr").mkdir()
    (checkout / "projects" / "CO-DETR" / "codetr" / "__init__.py").write_text("")
    monkeypatch.setenv("MMDET_CHECKOUT", str(checkout))
    monkeypatch.syspath_prepend(str(checkout))
    with projects_modules_restored():
        yield checkout


@contextmanager
def projects_modules_restored():
    """Drop the ``projects`` modules imported inside the block and put back those imported before."""
    before = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "projects"}
    try:
        yield
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] == "projects"]:
            del sys.modules[name]
        sys.modules.update(before)


def test_the_projects_modules_of_a_real_checkout_survive_the_fake_one(monkeypatch):
    """A real checkout's ``projects`` package stays imported: importing it again would register its
    classes twice (``CoATSSHead is already registered``)."""
    real = {"projects": types.ModuleType("projects"), "projects.CO-DETR.codetr": types.ModuleType("codetr")}
    for name, module in real.items():
        monkeypatch.setitem(sys.modules, name, module)
    with projects_modules_restored():
        stand_in = types.ModuleType("codetr")
        sys.modules["projects.CO-DETR.codetr"] = stand_in
        sys.modules["projects.CO-DETR.codetr.extra"] = stand_in
    assert {name: sys.modules.get(name) for name in real} == real
    assert "projects.CO-DETR.codetr.extra" not in sys.modules


def small_base() -> dict:
    return Config.fromfile(SUBSET_CONFIG).model.base


def on_two_images(cfg: Config, annotation_file: Path, work_dir: Path) -> Config:
    """The config with the demo saver, the CPU test scale and the two images; the rest is its own."""
    cfg.model.saver = Config.fromfile(SUBSET_CONFIG).model.saver
    if cfg.model.base.type == "CoDETR":  # not in the mmdet wheel
        cfg.model.base = small_base()
        cfg.model.base.data_preprocessor.pad_size_divisor = 32  # Co-DINO's pipeline does not pad
    dataloader = cfg.test_dataloader
    for transform in dataloader.dataset.pipeline:
        if transform.type in ("Resize", "Pad"):
            transform[("scale" if transform.type == "Resize" else "size")] = (320, 320)
    dataloader.update(num_workers=0, persistent_workers=False, batch_size=N_IMAGES)
    dataloader.dataset.update(data_root="", ann_file=str(annotation_file),
                              data_prefix=dict(img=str(assets.asset_path(assets.COCO_IMAGES)) + "/"))
    cfg.test_evaluator[0].ann_file = str(annotation_file)
    cfg.test_evaluator[1].out_file = str(work_dir / "routing.json")
    cfg.work_dir = str(work_dir)
    return cfg


def shipped_configs():
    return sorted(path.name for path in CONFIGS.glob("tinysaver_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_builds_the_runner_and_tests_two_images(
    name, two_images, split_threshold, tmp_path, request
):
    if name == OFFICIAL_CODINO:
        request.getfixturevalue("fake_checkout")
    annotation_file, image_ids = two_images
    cfg = on_two_images(Config.fromfile(CONFIGS / name), annotation_file, tmp_path)
    assert cfg.get("load_from") is None  # nothing fetched behind the user's back
    cfg.model.threshold = split_threshold

    metrics = Runner.from_cfg(cfg).test()

    assert {"coco/bbox_mAP", "tinysaver/exit_ratio", "tinysaver/gflops_per_image"} <= metrics.keys()
    routing = json.loads((tmp_path / "routing.json").read_text())
    assert [row["image_id"] for row in routing] == image_ids
    assert [row["exited"] for row in routing].count(True) == 1 and metrics["tinysaver/exit_ratio"] == 0.5
    assert metrics["tinysaver/base_gflops_per_image"] > 0  # the config's base ran on the other image


def test_the_official_codino_variant_inherits_the_checkout_named_by_mmdet_checkout(fake_checkout):
    cfg = Config.fromfile(CONFIGS / OFFICIAL_CODINO)
    assert cfg.model.base.type == "RTMDet"  # the stand-in's model, taken through _base_
    assert cfg.custom_imports.imports == ["tinysaver_det.mmdet", "projects.CO-DETR.codetr"]
    assert cfg.model.base.backbone.init_cfg is None and cfg.load_from is None
    assert cfg.model.type == "TinySaverDetector" and cfg.model.min_score == 0.05
    assert cfg.test_evaluator[0].type == "CocoMetric" and cfg.test_evaluator[1].type == "TinySaverRouting"


def test_the_official_codino_variant_without_mmdet_checkout_names_the_variable(monkeypatch):
    monkeypatch.delenv("MMDET_CHECKOUT", raising=False)
    with pytest.raises(KeyError, match="MMDET_CHECKOUT"):
        Config.fromfile(CONFIGS / OFFICIAL_CODINO)


def base_alone_checkpoint(cfg: Config, path: Path, extra: dict | None = None) -> dict:
    """Seeded random weights of ``cfg.model.base`` saved as a model-zoo checkpoint (keys without ``base.``)."""
    torch.manual_seed(0)
    base = MODELS.build(cfg.model.base)
    base.init_weights()
    state = {**base.state_dict(), **(extra or {})}
    torch.save({"state_dict": state, "meta": {}}, path)
    return state


@pytest.mark.slow
def test_the_runner_loads_a_base_alone_checkpoint_into_the_base(two_images, tmp_path):
    """What mmdet's tools/test.py does with its positional checkpoint: ``cfg.load_from = checkpoint``."""
    annotation_file, _ = two_images
    cfg = on_two_images(Config.fromfile(SUBSET_CONFIG), annotation_file, tmp_path)
    state = base_alone_checkpoint(cfg, tmp_path / "base.pth")
    cfg.load_from = str(tmp_path / "base.pth")
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    loaded = runner.model.base.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    log = next(tmp_path.rglob("*.log")).read_text()
    assert "Load checkpoint from" in log and "do not match" not in log


def test_training_only_parts_of_a_published_checkpoint_are_dropped_not_listed(two_images, tmp_path):
    """Co-DINO's checkpoint carries its auxiliary heads (``rpn_head.``, ``roi_head.``, ``bbox_head.``),
    which the inference config leaves out and names in ``base_training_only``. Shown here with the
    RTMDet-tiny base, whose own ``bbox_head`` must load, so the dropped prefixes are Faster R-CNN's."""
    cfg = Config.fromfile(SUBSET_CONFIG)
    extra = {"rpn_head.rpn_conv.weight": torch.zeros(1), "roi_head.0.bbox_head.fc_cls.weight": torch.zeros(1)}
    state = base_alone_checkpoint(cfg, tmp_path / "base.pth", extra)
    cfg.model.base_training_only = ("rpn_head.", "roi_head.")
    model = MODELS.build(cfg.model)
    load_state_dict(model, state, strict=True)  # raises on any missing or unexpected key
    assert torch.equal(model.base.state_dict()["bbox_head.rtm_cls.0.weight"], state["bbox_head.rtm_cls.0.weight"])

    cfg.model.base_training_only = ()
    with pytest.raises(RuntimeError, match="unexpected key in source state_dict: base.rpn_head.rpn_conv.weight"):
        load_state_dict(MODELS.build(cfg.model), state, strict=True)


def test_codino_config_drops_exactly_the_auxiliary_heads():
    cfg = Config.fromfile(CODINO_CONFIG)
    assert tuple(cfg.model.base_training_only) == ("rpn_head.", "roi_head.", "bbox_head.")
    assert "rpn_head" not in cfg.model.base and "roi_head" not in cfg.model.base and "bbox_head" not in cfg.model.base


@pytest.mark.slow
def test_mmdet_tools_test_py_loads_the_base_checkpoint_given_as_its_argument(two_images, tmp_path):
    """mmdet's own tools/test.py (shipped in the wheel under .mim/tools) with the base's checkpoint as
    its positional argument: it runs, and the log has no missing or unexpected keys."""
    import mmdet

    annotation_file, _ = two_images
    cfg = on_two_images(Config.fromfile(SUBSET_CONFIG), annotation_file, tmp_path / "work")
    base_alone_checkpoint(cfg, tmp_path / "base.pth")
    cfg.dump(tmp_path / "config.py")
    tool = Path(mmdet.__file__).parent / ".mim" / "tools" / "test.py"
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "config.py"), str(tmp_path / "base.pth"),
         "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Load checkpoint from" in output and "do not match" not in output
    assert len(json.loads((tmp_path / "work" / "routing.json").read_text())) == N_IMAGES


def test_place_models_puts_the_saver_on_the_device_and_in_fp16():
    from tinysaver_det.errors import TinySaverInputError
    from tinysaver_det.mmdet.evaluate_config import place_models

    cfg = Config.fromfile(SUBSET_CONFIG)
    assert place_models(cfg, "1", True, "none") == "cuda:1"  # a bare index, as Ultralytics takes it
    assert cfg.model.saver.device == "1" and cfg.model.saver.half is True
    cfg = Config.fromfile(SUBSET_CONFIG)
    assert place_models(cfg, None, False, "none") is None and "device" not in cfg.model.saver  # mmengine's rule
    with pytest.raises(TinySaverInputError, match="--half"):
        place_models(cfg, "cpu", True, "none")
    with pytest.raises(TinySaverInputError, match="GPU of its rank"):
        place_models(cfg, "cuda:0", False, "pytorch")


@pytest.mark.parametrize("flags", [["--half"], ["--device", "cpu", "--half"]])
def test_test_mmdet_refuses_half_on_the_cpu_in_one_error_line(flags, capsys):
    from tinysaver_det.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["test-mmdet", str(SUBSET_CONFIG), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert "error: --half (fp16) needs a GPU" in err.strip().splitlines()[-1]


@pytest.mark.slow  # mmengine's Runner with both models
def test_run_test_on_the_cpu_device_runs_both_models_there(two_images, tmp_path):
    from tinysaver_det.mmdet.evaluate_config import run_test

    annotation_file, _ = two_images
    cfg = on_two_images(Config.fromfile(SUBSET_CONFIG), annotation_file, tmp_path)
    metrics = run_test(cfg, device="cpu", work_dir=tmp_path)
    assert metrics["tinysaver/exit_ratio"] >= 0
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == metrics
