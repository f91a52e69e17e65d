"""Predictions files carry what made them: a router file records the saver it was trained
for and the cascade refuses another, and the offline tools refuse predictions made on another annotation file.

Fast: a hand-made 24-image annotation file, hand-made predictions of a weak "saver" and an exact "base", and
hand-made ``.run.json`` provenance files (as ``predict-coco`` writes them beside ``*_predictions.jsonl``).
"""

import json

import numpy as np
import pytest

from tinysaver_det.cli import main
from tinysaver_det.detection.cache import load_cache
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.router_files import load_router
from tinysaver_det.detection.run_inputs import prediction_provenance
from tinysaver_det.detection.studies.router_comparison import train_router
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import sha256_file

from tests.fakes import FakeDetector

SAVER_SHA = "a" * 64
OTHER_SHA = "b" * 64
N_IMAGES = 24


def write_dataset(root):
    """24 images of 100x100 with one box each; the base finds every box, the saver only on some images."""
    rng = np.random.default_rng(0)
    images, annotations, saver, base = [], [], [], []
    for i in range(1, N_IMAGES + 1):
        x, y = (float(v) for v in rng.uniform(5, 50, 2))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, 40.0, 40.0], "area": 1600.0,
                            "iscrowd": 0})
        exact = [x, y, x + 40, y + 40]
        base.append({"image_id": i, "boxes": [exact], "scores": [0.9], "category_ids": [1], "gflops": 10.0, "seconds": 0.1})
        good = rng.random() < 0.5
        box = exact if good else [60.0 - x, 60.0 - y, 95.0 - x, 95.0 - y]  # a miss where it is not good
        score = float(rng.uniform(0.6, 0.95) if good else rng.uniform(0.1, 0.5))
        saver.append({"image_id": i, "boxes": [box], "scores": [score], "category_ids": [1], "gflops": 1.0, "seconds": 0.01})
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "thing"}]}))
    paths = {}
    for name, rows in (("saver", saver), ("base", base)):
        paths[name] = root / f"{name}_model_predictions.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ann, paths


def write_provenance(predictions, sha256, annotation_file):
    """The ``.run.json`` predict-coco writes beside ``predictions``."""
    path = predictions.with_suffix(".run.json")
    path.write_text(json.dumps({
        "format": 1, "model": {"name": predictions.stem, "weights": "w.pt", "sha256": sha256},
        "annotation_file": str(annotation_file), "annotation_sha256": sha256_file(annotation_file), "limit": None,
        "n_images": N_IMAGES,
    }))
    return path


@pytest.fixture
def ladder(tmp_path):
    ann, paths = write_dataset(tmp_path)
    write_provenance(paths["saver"], SAVER_SHA, ann)
    write_provenance(paths["base"], OTHER_SHA, ann)
    return ann, paths


def run_cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def described(name, sha256):
    """A fake detector that describes itself by its sha256 (the cascade only checks it here, never runs it)."""
    return FakeDetector(name, {}, 1.0, sha256=sha256)


def test_prediction_provenance_reads_the_run_json_beside_a_file_or_its_run_directorys(tmp_path, ladder):
    ann, paths = ladder
    assert prediction_provenance(paths["saver"])["model"]["sha256"] == SAVER_SHA
    bare = tmp_path / "old_predictions.jsonl"
    bare.write_text(paths["saver"].read_text())
    assert prediction_provenance(bare) is None  # an older file records nothing
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"saver": {"name": "pico", "sha256": SAVER_SHA},
                                              "base": {"name": "s", "sha256": OTHER_SHA},
                                              "annotation_sha256": "c" * 64}))
    for role, sha in (("saver", SAVER_SHA), ("base", OTHER_SHA)):
        (run / f"{role}_predictions.jsonl").write_text("")
        provenance = prediction_provenance(run / f"{role}_predictions.jsonl")
        assert provenance["model"]["sha256"] == sha and provenance["annotation_sha256"] == "c" * 64
    paths["saver"].with_suffix(".run.json").write_text("[1, 2]")
    with pytest.raises(TinySaverInputError, match="run.json is not a json object"):
        prediction_provenance(paths["saver"])


def test_the_routers_tool_records_the_savers_sha256_and_the_cascade_refuses_another_saver(tmp_path, ladder, capsys):
    ann, paths = ladder
    out = tmp_path / "r"
    code, _, err = run_cli(["routers", "--ann", ann, "--model", f"saver={paths['saver']}", "--model",
                            f"base={paths['base']}", "--no-context", "--levels", "11", "--out", out], capsys)
    assert code == 0, err
    file = out / "learned_router.json"
    assert json.loads(file.read_text())["saver_sha256"] == SAVER_SHA
    assert load_router(file).saver == SAVER_SHA
    Cascade(described("saver", SAVER_SHA), described("base", OTHER_SHA), 0.5, confidence=str(file))  # its own saver: accepted
    assert "note:" not in capsys.readouterr().err
    with pytest.raises(TinySaverInputError, match=f"sha256 {SAVER_SHA[:12]}.*'other' has sha256 {OTHER_SHA[:12]}"):
        Cascade(described("other", OTHER_SHA), described("base", OTHER_SHA), 0.5, confidence=str(file))


def test_a_router_file_without_a_recorded_saver_is_accepted_with_a_one_line_note(tmp_path, ladder, capsys):
    ann, paths = ladder
    for path in paths.values():
        path.with_suffix(".run.json").unlink()  # predictions made before provenance files
    cache = load_cache(ann, {"saver": paths["saver"], "base": paths["base"]})
    assert cache.models[0].sha256 is None
    router = train_router(cache, "saver", "base")
    assert router.saver is None
    old = router.to_dict()
    del old["saver_sha256"]  # a file written before routers recorded their saver
    file = tmp_path / "old_router.json"
    file.write_text(json.dumps(old))
    Cascade(described("saver", OTHER_SHA), described("base", OTHER_SHA), 0.5, confidence=str(file))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: router 'learned' records no saver"), err


@pytest.mark.parametrize("command", [["pick", "--gflops", "5"], ["routers", "--no-context"],
                                     ["multistage-front"], ["post-evaluator", "--splits", "1"]])
def test_the_offline_tools_refuse_predictions_made_on_another_annotation_file(command, tmp_path, ladder, capsys):
    ann, paths = ladder
    other = tmp_path / "other_ann.json"
    other.write_text(ann.read_text().replace('"thing"', '"object"'))
    argv = [*command, "--ann", other, "--model", f"saver={paths['saver']}", "--model", f"base={paths['base']}",
            "--out", tmp_path / "o"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert err.startswith(f"error: predictions {paths['saver']} were made on annotation file {ann}")
    assert f"not on {other} (other content)" in err
    assert not (tmp_path / "o").exists()
