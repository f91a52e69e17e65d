"""The TinySaver front door: predict on every kind of source, Ultralytics Results, routing as in eval."""

import itertools
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tinysaver_det import assets
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_jsonl, sha256_file
from tinysaver_det.operating_point import OperatingPointFile, model_entry, read_operating_point
from tests.videos import closest_frame

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def cascade():
    from tinysaver_det.api import TinySaver

    return TinySaver(assets.asset_path(assets.DEMO_SAVER), assets.asset_path(assets.DEMO_BASE), 0.25)


@pytest.fixture(scope="module")
def four_images(tmp_path_factory):
    """Four demo val images in their own folder."""
    folder = tmp_path_factory.mktemp("four")
    for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def routing(results):
    return [(r.exited, r.confidence, r.stage) for r in results]


@slow
def test_predict_on_a_folder_gives_ultralytics_results_with_the_routing(cascade, four_images, tmp_path):
    from ultralytics.engine.results import Results

    results = cascade.predict(four_images)
    assert [r.path for r in results] == [str(p) for p in sorted(four_images.glob("*.jpg"))]
    assert all(isinstance(r, Results) for r in results)
    assert results[0].names == cascade.base.names  # the base's classes
    for r in results:
        assert r.plot().shape == r.orig_img.shape
        assert r.frame == 0 and r.stage == ("saver" if r.exited else "base")
        assert r.gflops["saver"] > 0 and (r.gflops["base"] == 0) == r.exited and (r.ms["base"] == 0) == r.exited
        assert r.speed["inference"] == pytest.approx(r.ms["saver"] + r.ms["base"])
        assert len(json.loads(r.to_json())) == len(r.boxes)
        assert (r.boxes.conf.numpy() >= 0.25).all()
    assert {r.exited for r in results} == {True, False}  # both routes are exercised on these four
    saved = results[0].save(filename=str(tmp_path / "drawn.jpg"))
    assert cv2.imread(saved).shape == results[0].orig_img.shape
    moved = results[1].cpu()  # Ultralytics' _apply builds a new result: the routing travels with it
    assert moved.exited == results[1].exited and moved.confidence == results[1].confidence


@slow
def test_paths_arrays_pil_and_yolo_objects_route_alike(cascade, four_images):
    from PIL import Image
    from ultralytics import YOLO

    from tinysaver_det.api import TinySaver

    paths = [str(p) for p in sorted(four_images.glob("*.jpg"))]
    expected = routing(cascade.predict(four_images))
    assert routing(cascade.predict(paths)) == expected
    arrays = [cv2.imread(p) for p in paths]
    from_arrays = cascade.predict(arrays)
    assert routing(from_arrays) == expected
    assert [r.path for r in from_arrays] == [f"image{i}.jpg" for i in range(4)]
    assert routing(cascade.predict(arrays[1])) == expected[1:2]  # one array
    assert routing(cascade.predict([Image.open(p) for p in paths])) == expected
    objects = TinySaver(YOLO(str(assets.asset_path(assets.DEMO_SAVER))), YOLO(str(assets.asset_path(assets.DEMO_BASE))),
                        0.25)
    assert routing(objects.predict(paths)) == expected
    stream = cascade.predict(paths, stream=True)
    assert not isinstance(stream, list) and routing(stream) == expected


@slow
def test_video_frames_are_predicted_one_by_one(cascade, four_images, tmp_path):
    paths = sorted(four_images.glob("*.jpg"))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (256, 256))
    for path in paths + paths[:2]:
        writer.write(cv2.imread(str(path)))
    writer.release()
    results = list(cascade.predict(str(video), stream=True, batch=4))
    assert [r.frame for r in results] == [1, 2, 3, 4, 5, 6]
    assert {r.path for r in results} == {str(video)}
    assert all(r.orig_img.shape == (256, 256, 3) for r in results)
    # the decoded frames (lossy, so not the jpgs' pixels) route as the same arrays given directly
    assert routing(cascade.predict([r.orig_img for r in results], batch=4)) == routing(results)


@slow
def test_a_frame_number_is_the_source_frame_shown_with_or_without_vid_stride(cascade, demo_video):
    video, frames = demo_video
    every = list(cascade.predict(str(video), stream=True, batch=2))
    assert [r.frame for r in every] == [closest_frame(r.orig_img, frames) for r in every] == list(range(1, 11))
    # Ultralytics grabs vid_stride frames and decodes the last: the source's frames 3, 6, 9 (10 is a short tail)
    strided = list(cascade.predict(str(video), stream=True, batch=2, vid_stride=3))
    assert [r.frame for r in strided] == [closest_frame(r.orig_img, frames) for r in strided] == [3, 6, 9]


def readme_predict_loop() -> str:
    """The README's first Python example cut to its imports and its ``for result in cascade.predict(...)`` loop."""
    block = (Path(__file__).resolve().parent.parent / "README.md").read_text().split("```python\n", 1)[1].split("```")[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("for result in cascade.predict("))
    body = itertools.takewhile(lambda line: line.startswith("    "), lines[start + 1:])
    return "\n".join([line for line in lines[:start] if line.startswith(("from ", "import "))] + [lines[start], *body])


@slow
def test_the_readme_loop_draws_every_frame_of_a_video(cascade, demo_video, tmp_path, monkeypatch):
    video, frames = demo_video
    code, replaced = re.subn(r'cascade\.predict\("[^"]*"', f"cascade.predict({str(video)!r}", readme_predict_loop())
    assert replaced == 1
    monkeypatch.chdir(tmp_path)
    exec(code, {"cascade": cascade})
    drawn = [cv2.imread(str(path)) for path in tmp_path.rglob("*") if path.is_file()]
    assert len(drawn) == len(frames) and all(image.shape == frames[0].shape for image in drawn)


@slow
def test_predict_routes_every_image_as_eval_does(full_run, small_set):
    from tinysaver_det.api import TinySaver

    records = read_jsonl(full_run / "records.jsonl")
    paths = [str(small_set / "images" / r["file_name"]) for r in records]
    cascade = TinySaver(assets.asset_path(assets.DEMO_SAVER), assets.asset_path(assets.DEMO_BASE), 0.25)
    # eval's batch size and image order; the boxes eval scored (single_label=False: the validator's NMS)
    results = cascade.predict(paths, batch=5, conf=0.0, single_label=False)
    assert [(r.exited, r.confidence) for r in results] == [(rec["exited"], rec["confidence"]) for rec in records]
    shown = cascade.predict(paths, batch=5, conf=0.0)  # YOLO.predict's boxes, routed the same way
    assert [(r.exited, r.confidence) for r in shown] == [(rec["exited"], rec["confidence"]) for rec in records]
    cascade_json = {}
    for row in json.loads((full_run / "results.json").read_text()):
        cascade_json.setdefault(row["image_id"], []).append(row["score"])
    for record, result in zip(records, results):
        assert sorted(result.boxes.conf.tolist()) == pytest.approx(sorted(cascade_json.get(record["image_id"], [])))


@slow
def test_a_higher_conf_changes_no_routing(cascade, four_images):
    low = cascade.predict(four_images, conf=0.0)
    high = cascade.predict(four_images, conf=0.6)
    assert routing(low) == routing(high)
    for a, b in zip(low, high):
        kept = a.boxes.conf.numpy() >= 0.6
        assert np.array_equal(a.boxes.data.numpy()[kept], b.boxes.data.numpy())
    assert sum(len(r.boxes) for r in high) < sum(len(r.boxes) for r in low)


@slow
def test_a_saver_with_a_deployment_conf_is_refused():
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.api import TinySaver

    saver = UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), conf=0.25)
    with pytest.raises(TinySaverInputError, match=r"conf=0.25 > min_score=0.05: the router must see every box"):
        TinySaver(saver, assets.asset_path(assets.DEMO_BASE), 0.25)
    from tinysaver_det.detection.cascade import Cascade

    with pytest.raises(TinySaverInputError, match="conf=0.25 > min_score=0.05"):  # eval's and the plug-in's cascade
        Cascade(saver, saver, 0.25)
    TinySaver(saver, assets.asset_path(assets.DEMO_BASE), 0.25, min_score=0.3)  # conf below the floor: fine


@slow
def test_saver_classes_map_onto_the_base_by_name_or_class_map(four_images):
    from tinysaver_det.adapters.ultralytics import UltralyticsDetector
    from tinysaver_det.api import TinySaver

    base = UltralyticsDetector(assets.asset_path(assets.DEMO_BASE))
    renamed = {**base.class_names, 0: "disc", 6: "asterisk"}  # the saver calls two classes otherwise
    saver = UltralyticsDetector(assets.asset_path(assets.DEMO_SAVER), class_names=renamed)
    with pytest.raises(TinySaverInputError, match=r"2 class name\(s\) not among the base's classes.*\['disc', 'asterisk'\]"):
        TinySaver(saver, base, 0.25)
    with pytest.raises(TinySaverInputError, match="the base has no class 'ring'"):
        TinySaver(saver, base, 0.25, class_map={"disc": "ring", "asterisk": "star"})
    mapped = TinySaver(saver, base, 0.0, class_map={"disc": "circle", "asterisk": "star"})
    plain = TinySaver(assets.asset_path(assets.DEMO_SAVER), base, 0.0)  # t = 0: every image keeps the saver's answer
    for a, b in zip(mapped.predict(four_images), plain.predict(four_images)):
        assert a.exited and np.array_equal(a.boxes.data.numpy(), b.boxes.data.numpy())


def test_a_missing_device_is_one_error_before_any_model_loads():
    from tinysaver_det.timing import check_device

    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(TinySaverInputError, match=r"device 'cuda:7': this machine has"):
        check_device(f"cuda:{7 + count}" if count else "cuda:7")
    with pytest.raises(TinySaverInputError, match="not a device"):
        check_device("gpu0")


def test_demo_names_resolve_to_the_demo_weights():
    from tinysaver_det.adapters import resolve_weights

    assert resolve_weights("demo:s") == assets.asset_path(assets.DEMO_BASE)
    with pytest.raises(ValueError, match="unknown demo model 'demo:xl'"):
        resolve_weights("demo:xl")


# ---- operating point files


def _point(saver, base, saver_spec, base_spec, t=0.25, **kw) -> OperatingPointFile:
    return OperatingPointFile(
        saver=model_entry(saver_spec, saver.settings, class_map={}), base=model_entry(base_spec, base.settings),
        confidence={"name": "mean"}, min_score=0.05, t=t, **kw,
    )


@slow
def test_an_operating_point_loads_back_to_the_same_routing(cascade, four_images, tmp_path):
    from tinysaver_det.api import TinySaver

    path = _point(cascade.saver, cascade.base, assets.asset_path(assets.DEMO_SAVER), "demo:s").write(tmp_path)
    assert path.name == "operating_point.json"
    point = read_operating_point(tmp_path)
    assert point.base["weights"] == "demo:s" and point.saver["sha256"] == sha256_file(assets.asset_path(assets.DEMO_SAVER))
    loaded = TinySaver.from_operating_point(path)
    assert loaded.t == 0.25 and loaded.saver.predict_args["conf"] == 0.001
    assert routing(loaded.predict(four_images)) == routing(cascade.predict(four_images))


@slow
def test_a_changed_weights_file_is_refused_naming_both_hashes(cascade, tmp_path):
    from tinysaver_det.api import TinySaver

    weights = tmp_path / "saver.pt"
    shutil.copy(assets.asset_path(assets.DEMO_SAVER), weights)
    recorded = sha256_file(weights)
    path = _point(cascade.saver, cascade.base, weights, "demo:s").write(tmp_path / "op.json")
    shutil.copy(assets.demo_weights("n"), weights)  # same path, other weights
    with pytest.raises(TinySaverInputError) as error:
        TinySaver.from_operating_point(path)
    message = str(error.value)
    assert recorded in message and sha256_file(weights) in message and str(weights.resolve()) in message


def test_operating_point_files_are_checked_on_reading(tmp_path):
    entry = {"weights": "yolov8n.pt", "sha256": None, "imgsz": 640, "predict": {"conf": 0.001}}
    point = OperatingPointFile(entry, entry, {"name": "mean"}, 0.05, 0.3,
                               held_out={"AP": 0.5, "bootstrap": {"AP": [0.4, 0.6]}})
    path = point.write(tmp_path / "op.json")
    assert read_operating_point(path) == point
    data = json.loads(path.read_text())
    for change, message in [
        (dict(format="other"), "not an operating point file"),
        (dict(version=99), "version 99"),
        (dict(t=None), "t must be a finite number"),
        (dict(saver=["yolov8n.pt"]), "saver must be an object"),
    ]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(TinySaverInputError, match=message):
            read_operating_point(path)
    path.write_text("{")
    with pytest.raises(TinySaverInputError, match="not valid json"):
        read_operating_point(path)
    with pytest.raises(ValueError, match="Out of range float values"):
        OperatingPointFile(entry, entry, {"name": "mean"}, 0.05, float("nan")).write(tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()


def test_a_changed_router_file_is_refused(tmp_path):
    from tinysaver_det.operating_point import confidence_entry

    router = tmp_path / "router.json"
    router.write_text('{"kind": "score", "name": "mean"}')
    entry = {"weights": "yolov8n.pt"}
    point = OperatingPointFile(entry, entry, confidence_entry(router), 0.05, 0.3)
    assert point.confidence_option() == str(router.resolve())
    router.write_text('{"kind": "score", "name": "max"}')
    with pytest.raises(TinySaverInputError, match=r"router file .* has sha256 [0-9a-f]{64}, but the operating point"):
        point.confidence_option()


@slow
def test_an_operating_point_written_by_pick_gives_the_same_routing_and_ap(demo_slice, tmp_path):
    from tinysaver_det.api import TinySaver
    from tinysaver_det.cli import main
    from tinysaver_det.core.policy import image_confidence
    from tinysaver_det.detection.cache import read_predictions, split_image_ids
    from tinysaver_det.detection.coco import accumulate, evaluate_images, load_ground_truth, summarize
    from tinysaver_det.detection.dataset import restrict_annotations
    from tinysaver_det.detection.types import Detections

    files = {name: demo_slice.predictions[name] for name in ("pico", "s")}
    out = tmp_path / "pick"
    assert main(["pick", "--ann", str(demo_slice.annotations), "--model", f"pico={files['pico']}",
                 "--model", f"s={files['s']}", "--gflops", "3.0", "--weights", f"pico={assets.asset_path(assets.DEMO_SAVER)}",
                 "--weights", "s=demo:s", "--bootstrap", "20", "--out", str(out)]) == 0
    point = read_operating_point(out)
    low, high = point.held_out["bootstrap"]["AP"]
    assert point.t > 0 and low <= point.held_out["AP"] <= high and point.held_out["images"] == 16

    dataset = demo_slice.dataset
    cascade = TinySaver.from_operating_point(out / "operating_point.json")
    # the answers the pick scored (single_label=False: the validator NMS's boxes, not YOLO.predict's)
    results = cascade.predict([str(dataset.path(info)) for info in dataset.images], batch=32, conf=0.0,
                              single_label=False)
    saver = read_predictions(files["pico"])
    assert [r.exited for r in results] == [image_confidence(saver[i].detections.scores) >= point.t
                                           for i in dataset.image_ids]
    _, held_out = split_image_ids(dataset.image_ids, "parity")
    ids_by_name = dataset.category_ids_by_name
    to_dataset = np.array([ids_by_name[cascade.names[k]] for k in sorted(cascade.names)])
    answers = [Detections(i, r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), to_dataset[r.boxes.cls.numpy().astype(int)])
               for i, r in zip(dataset.image_ids, results) if i in set(held_out)]
    ground_truth = load_ground_truth(restrict_annotations(json.loads(demo_slice.annotations.read_text()), held_out))
    assert summarize(accumulate(evaluate_images(ground_truth, answers)))["AP"] == pytest.approx(point.held_out["AP"], abs=1e-6)

    run = tmp_path / "eval"
    assert main(["eval", "--op", str(out), "--ann", str(demo_slice.annotations), "--images",
                 str(assets.asset_path(assets.DEMO_IMAGES)), "--batch", "32", "--out", str(run), "--quiet"]) == 0
    assert [r["exited"] for r in read_jsonl(run / "records.jsonl")] == [r.exited for r in results]


def test_a_device_this_machine_lacks_is_one_line_before_anything_is_written(tmp_path, capsys):
    from tinysaver_det.cli import main

    import torch

    device = f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"
    for command in (["predict", "--source", str(tmp_path)], ["eval"], ["predict-coco", "--weights", "demo:n"]):
        out = tmp_path / "out" / command[0]
        with pytest.raises(SystemExit) as stop:  # argparse's usage error: usage lines, then one error line
            main([*command, "--out", str(out), "--device", device])
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith(("usage:", " "))]
        assert stop.value.code == 2 and len(err) == 1
        assert err[0].endswith(f"error: argument --device: device '{device}': this machine has "
                               f"{'no CUDA device' if device == 'cuda:0' else f'{device[5:]} CUDA device(s)'}; "
                               "use --device cpu")
        assert not out.exists()


def test_half_on_the_cpu_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    """Ultralytics would run fp32 on the CPU without a word; the run would not be the one asked for."""
    from tinysaver_det.adapters import create_detector
    from tinysaver_det.cli import main

    commands = (["predict", "--source", str(tmp_path)], ["eval", "--limit", "2"], ["predict-coco", "--weights", "demo:n"],
                ["multistage-run", "--weights", "demo:pico", "demo:n", "--t", "0.3"])
    for command in commands:
        out = tmp_path / "out" / command[0]
        with pytest.raises(SystemExit) as stop:  # a usage error: usage lines, then one error line
            main([*command, "--out", str(out), "--device", "cpu", "--half"])
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith(("usage:", " "))]
        assert stop.value.code == 2 and len(err) == 1, err
        assert err[0].endswith("error: --half (fp16) needs a GPU, and the device is the CPU; drop --half or pass "
                               "--device 0"), err
        assert not out.exists()
    with pytest.raises(TinySaverInputError, match="needs a GPU"):
        create_detector("demo:pico", None, half=True)  # the library's default device is the CPU too


def test_op_and_the_settings_it_gives_are_not_taken_together(capsys):
    from tinysaver_det.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["predict", "--source", "x", "--out", "y", "--op", "op.json", "--t", "0.3", "--saver", "demo:n"])
    assert stop.value.code == 2 and "--op gives the saver, base, t and confidence; drop --saver, --t" in capsys.readouterr().err


def test_model_time_is_synchronised_and_leaves_the_warm_up_out(monkeypatch):
    from tinysaver_det import timing

    events = []
    monkeypatch.setattr(timing, "cuda_in_use", lambda: True)
    monkeypatch.setattr(timing, "synchronize", lambda: events.append("sync"))
    clock = timing.ModelClock()
    result, _ = clock.time(lambda: events.append("call") or 7)
    assert result == 7 and events == ["sync", "call", "sync", "sync", "call", "sync"]  # on CUDA: run again, timed
    events.clear()
    clock.time(lambda: events.append("call"))
    assert events == ["sync", "call", "sync"]
    events.clear()
    timing.ModelClock().time(lambda: events.append("call"), warmup=lambda: events.append("warm-up"))
    assert events == ["warm-up", "sync", "call", "sync"]


def test_conf_is_not_taken_as_an_abbreviation_of_confidence(capsys):
    from tinysaver_det.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["eval", "--conf", "0.3"])
    assert stop.value.code == 2 and "unrecognized arguments: --conf 0.3" in capsys.readouterr().err


@slow
def test_a_k_stage_operating_point_from_pick_rebuilds_the_k_stage_cascade(demo_slice, tmp_path):
    """pick --models pico n s writes a 3-stage operating point; the builder rebuilds that cascade, which
    routes each image to the stage the cached predictions say; TinySaver (2 models) refuses the file."""
    from tinysaver_det.api import TinySaver
    from tinysaver_det.build import build_cascade
    from tinysaver_det.cli import main
    from tinysaver_det.core.cascade_model import stage_indices
    from tinysaver_det.core.policy import image_confidence
    from tinysaver_det.detection.cache import read_predictions
    from tinysaver_det.detection.cascade import MultiStageCascade
    from tinysaver_det.detection.images import load_image

    chain = ("pico", "n", "s")
    out = tmp_path / "pick"
    argv = ["pick", "--ann", str(demo_slice.annotations), "--models", *chain, "--max-drop", "0.2",
            "--bootstrap", "5", "--out", str(out)]
    for name in chain:
        argv += ["--model", f"{name}={demo_slice.predictions[name]}"]
    assert main(argv) == 0
    point = read_operating_point(out / "operating_point.json")
    assert point.n_stages == 3 and len(point.stage_thresholds) == 2
    assert [e["sha256"] for e in point.stage_entries] == [demo_slice.models[m].settings["sha256"] for m in chain]
    data = json.loads((out / "operating_point.json").read_text())
    assert "saver" not in data and len(data["stages"]) == 3 and data["t"] == list(point.stage_thresholds)

    dataset = demo_slice.dataset
    cascade = build_cascade(operating_point=out, category_ids_by_name=dataset.category_ids_by_name)
    assert isinstance(cascade, MultiStageCascade) and cascade.thresholds == point.stage_thresholds
    infos = dataset.images
    outputs = cascade.run([load_image(dataset.path(info)) for info in infos], [info.image_id for info in infos])
    cached = [read_predictions(demo_slice.predictions[m]) for m in chain[:-1]]
    confidences = [[image_confidence(rows[info.image_id].detections.scores) for info in infos] for rows in cached]
    assert [o.stage for o in outputs] == stage_indices(confidences, point.stage_thresholds).tolist()
    with pytest.raises(TinySaverInputError, match="3-stage"):
        TinySaver.from_operating_point(out)
