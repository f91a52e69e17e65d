"""Every bad input gets a clear error that names it, or a defined handling that the run reports.

Decoding is checked file by file; then one run over a folder holding all of them (plus good
images) shows that no image is lost: each has a record, the unreadable ones are listed in
errors.json and the summary, and they count in the AP as images with no detections.
"""

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from tinysaver_det import assets
from tinysaver_det.detection.cascade import Cascade
from tinysaver_det.detection.dataset import CocoDataset
from tinysaver_det.detection.images import ImageSizeMismatchError, UnreadableImageError, load_image
from tinysaver_det.detection.coco.reference import coco_bbox_metrics, load_coco
from tinysaver_det.detection.runner import evaluate_cascade
from tinysaver_det.io import read_jsonl

EASY_IMAGE = "val_00006.jpg"  # difficulty 0.08, 4 objects: the demo base finds them all
PAD = 64  # rows added below the 256x256 demo image, so that a 90-degree rotation changes its size
EXIF_ORIENTATION = 0x0112


def demo_bgr(name=EASY_IMAGE) -> np.ndarray:
    return cv2.imread(str(assets.asset_path(assets.DEMO_IMAGES) / name))


def padded_upright() -> np.ndarray:
    """The easy demo image on a 256 wide x 320 high canvas: its boxes are unchanged."""
    return cv2.copyMakeBorder(demo_bgr(), 0, PAD, 0, 0, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def save_stored_rotated_with_exif(path) -> np.ndarray:
    """Store the padded image turned 90 degrees clockwise with EXIF orientation 8 ("turn it back"),
    as a phone does; return the stored pixels as OpenCV decodes them."""
    stored = np.ascontiguousarray(np.rot90(padded_upright(), -1))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    Image.fromarray(stored[..., ::-1]).save(path, quality=100, exif=exif.tobytes())
    return stored


def truncated_jpeg_bytes() -> bytes:
    data = (assets.asset_path(assets.DEMO_IMAGES) / EASY_IMAGE).read_bytes()
    return data[: len(data) * 2 // 3]


def assert_close(a, b, mean_abs=2.0):
    assert a.shape == b.shape and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() < mean_abs


# --- decoding, one file at a time ---------------------------------------------------------------


def test_a_missing_image_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"image not found: {tmp_path / 'nope.jpg'}"):
        load_image(tmp_path / "nope.jpg")


@pytest.mark.slow
@pytest.mark.parametrize(
    "content, message",
    [
        (lambda: b"", "empty image file (0 bytes)"),
        (lambda: b"this is text, not a JPEG\n", "cannot decode image (not an image file, or corrupt)"),
        (truncated_jpeg_bytes, "truncated JPEG (no end-of-image marker after its last scan)"),
    ],
    ids=["zero-bytes", "text-named-jpg", "truncated-jpeg"],
)
def test_an_undecodable_file_is_named(tmp_path, content, message):
    """``content()`` makes the file's bytes when the test runs (the truncated JPEG needs a demo image)."""
    path = tmp_path / "bad.jpg"
    path.write_bytes(content())
    with pytest.raises(UnreadableImageError) as error:
        load_image(path)
    assert str(error.value) == f"{message}: {path}"


def test_png_alpha_is_dropped_and_the_colour_channels_kept(tmp_path):
    bgr = demo_bgr()
    alpha = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([bgr, alpha]))
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), bgr)


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path):
    gray = cv2.cvtColor(demo_bgr(), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "g.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 100])
    image = load_image(tmp_path / "g.jpg")
    assert image.shape == (256, 256, 3)
    assert_close(image, np.dstack([gray] * 3))


def test_cmyk_jpeg_decodes_to_the_right_colours(tmp_path):
    bgr = demo_bgr()
    Image.fromarray(bgr[..., ::-1]).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert_close(load_image(tmp_path / "c.jpg"), bgr, mean_abs=3.0)


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    bgr = demo_bgr()
    cv2.imwrite(str(tmp_path / "16.png"), bgr.astype(np.uint16) * 257)
    assert cv2.imread(str(tmp_path / "16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(load_image(tmp_path / "16.png"), bgr)


def test_exif_orientation_is_applied_only_when_the_annotation_size_asks_for_it(tmp_path):
    stored = save_stored_rotated_with_exif(tmp_path / "phone.jpg")
    assert stored.shape[:2] == (256, 256 + PAD)  # stored: 320 wide x 256 high
    # Annotation in the displayed orientation (256 x 320): the EXIF rotation is applied.
    assert_close(load_image(tmp_path / "phone.jpg", (256, 256 + PAD)), padded_upright())
    # Annotation in the stored orientation (COCO's convention): the stored pixels.
    assert_close(load_image(tmp_path / "phone.jpg", (256 + PAD, 256)), stored)
    with pytest.raises(ImageSizeMismatchError, match=r"phone.jpg decodes to 320x256 \(EXIF-oriented: 256x320\) "
                                                     r"but its annotation says 300x200"):
        load_image(tmp_path / "phone.jpg", (300, 200))


# --- one run over a folder of good and bad images -----------------------------------------------


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A COCO dataset whose folder holds every kind of bad image, next to good ones.

    Returns the root and ``{file name: image id}``. ``missing.jpg`` is annotated (with the boxes of
    a real image) but absent; ``extra.jpg`` is present but not annotated.
    """
    root = tmp_path_factory.mktemp("zoo")
    images = root / "images"
    images.mkdir()
    demo = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    boxes_of = {i["file_name"]: [a for a in demo["annotations"] if a["image_id"] == i["id"]] for i in demo["images"][:8]}
    bgr = demo_bgr()
    entries = []  # (file name, width, height, source of its annotations)

    def add(name, width=256, height=256, source=None):
        entries.append((name, width, height, source))

    for name in ("val_00000.jpg", EASY_IMAGE):
        shutil.copy(assets.asset_path(assets.DEMO_IMAGES) / name, images / name)
        add(name, source=name)
    add("missing.jpg", source="val_00001.jpg")
    (images / "empty.jpg").write_bytes(b"")
    add("empty.jpg")
    (images / "truncated.jpg").write_bytes(truncated_jpeg_bytes())
    add("truncated.jpg")
    (images / "text.jpg").write_text("not an image")
    add("text.jpg")
    cv2.imwrite(str(images / "alpha.png"), np.dstack([bgr, np.full((256, 256), 40, np.uint8)]))
    add("alpha.png", source=EASY_IMAGE)
    cv2.imwrite(str(images / "gray.jpg"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    add("gray.jpg")
    Image.fromarray(bgr[..., ::-1]).convert("CMYK").save(images / "cmyk.jpg", quality=95)
    add("cmyk.jpg", source=EASY_IMAGE)
    cv2.imwrite(str(images / "sixteen.png"), bgr.astype(np.uint16) * 257)
    add("sixteen.png", source=EASY_IMAGE)
    cv2.imwrite(str(images / "upright.png"), padded_upright())
    add("upright.png", 256, 256 + PAD, source=EASY_IMAGE)
    save_stored_rotated_with_exif(images / "phone.jpg")
    add("phone.jpg", 256, 256 + PAD, source=EASY_IMAGE)  # annotated as displayed
    cv2.imwrite(str(images / "one_pixel.png"), np.full((1, 1, 3), 200, np.uint8))
    add("one_pixel.png", 1, 1)
    huge = np.full((8000, 10000, 3), 114, np.uint8)
    huge[:2560, :2560] = cv2.resize(bgr, (2560, 2560), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(images / "huge.jpg"), huge)
    add("huge.jpg", 10000, 8000)
    shutil.copy(images / "val_00000.jpg", images / "wrong_size.jpg")
    add("wrong_size.jpg", 300, 200)
    shutil.copy(images / "val_00000.jpg", images / "extra.jpg")

    annotations, ids = [], {}
    for image_id, (name, _, _, source) in enumerate(entries, start=1):
        ids[name] = image_id
        for box in boxes_of.get(source, []):
            annotations.append({**box, "id": len(annotations) + 1, "image_id": image_id})
    demo.update(
        images=[{"id": ids[n], "file_name": n, "width": w, "height": h} for n, w, h, _ in entries],
        annotations=annotations,
    )
    (root / "ann.json").write_text(json.dumps(demo))
    return root, ids


@pytest.fixture(scope="module")
def zoo_run(zoo, demo_saver, demo_base, tmp_path_factory):
    """The cascade at t = 1.5 (every image goes to the base) over the zoo, batches of 4."""
    root, _ = zoo
    out = tmp_path_factory.mktemp("zoo_run")
    dataset = CocoDataset(root / "ann.json", root / "images")
    summary = evaluate_cascade(Cascade(demo_saver, demo_base, 1.5), dataset, out, batch_size=4, progress=False)
    return out, summary


EXPECTED_STATUS = {
    "missing.jpg": "missing",
    "empty.jpg": "unreadable",
    "truncated.jpg": "unreadable",
    "text.jpg": "unreadable",
    "wrong_size.jpg": "size_mismatch",
}


@pytest.mark.slow
def test_every_annotated_image_has_exactly_one_record_with_its_status(zoo, zoo_run):
    _, ids = zoo
    records = read_jsonl(zoo_run[0] / "records.jsonl")
    assert [r["image_id"] for r in records] == sorted(ids.values())
    for record in records:
        assert record["status"] == EXPECTED_STATUS.get(record["file_name"], "ok"), record
        if record["status"] == "ok":
            assert record["error"] is None and record["exited"] is False
        else:
            assert record["file_name"] in record["error"] and record["confidence"] is None
            assert record["exited"] is None and record["n_boxes"] == record["base_gflops"] == 0


@pytest.mark.slow
def test_errors_json_lists_the_skipped_images_and_the_unannotated_file(zoo_run):
    errors = json.loads((zoo_run[0] / "errors.json").read_text())
    assert {e["file_name"]: e["status"] for e in errors["skipped"]} == EXPECTED_STATUS
    messages = {e["file_name"]: e["error"] for e in errors["skipped"]}
    assert messages["empty.jpg"].startswith("empty image file (0 bytes)")
    assert messages["truncated.jpg"].startswith("truncated JPEG")
    assert messages["missing.jpg"].startswith("image not found")
    assert "annotation says 300x200" in messages["wrong_size.jpg"]
    assert errors["not_in_annotations"] == ["extra.jpg"]
    assert "no detections" in errors["policy"]


@pytest.mark.slow
def test_the_summary_reports_the_skipped_images_the_policy_and_t_above_one(zoo_run):
    out, summary = zoo_run
    assert summary.skipped_images == {"missing": 1, "size_mismatch": 1, "unreadable": 3}
    assert summary.unannotated_files == 1
    saved = json.loads((out / "summary.json").read_text())
    assert saved["skipped_images"] == summary.skipped_images and "no detections" in saved["unreadable_policy"]
    table = (out / "summary.md").read_text()
    assert ("Skipped: 5 image(s) that could not be read (1 missing, 1 size_mismatch, 3 unreadable), listed in "
            "errors.json; an image that cannot be read stays in the evaluation as an image with no detections") in table
    assert "1 image file(s) in the image folder are not in the annotation file" in table
    assert "t > 1: no image can exit" in table
    assert summary.cascade.exit_ratio == 0.0


@pytest.mark.slow
def test_an_unreadable_image_counts_in_the_ap_as_an_image_with_no_detections(zoo, zoo_run):
    root, ids = zoo
    out, summary = zoo_run
    ground_truth = load_coco(root / "ann.json")
    results = json.loads((out / "results.json").read_text())
    assert not [r for r in results if r["image_id"] == ids["missing.jpg"]]
    everything = coco_bbox_metrics(ground_truth, results, sorted(ids.values()))
    assert summary.cascade.metrics["AP"] == everything["AP"]
    readable = sorted(i for name, i in ids.items() if name not in EXPECTED_STATUS)
    assert coco_bbox_metrics(ground_truth, results, readable)["AP"] > everything["AP"]  # missing.jpg's boxes count


@pytest.mark.slow
def test_boxes_of_an_exif_rotated_photo_land_where_its_annotation_expects_them(zoo, zoo_run):
    root, ids = zoo
    ground_truth = load_coco(root / "ann.json")
    results = json.loads((zoo_run[0] / "results.json").read_text())
    exif_ap = coco_bbox_metrics(ground_truth, results, [ids["phone.jpg"]])["AP"]
    upright_ap = coco_bbox_metrics(ground_truth, results, [ids["upright.png"]])["AP"]
    assert exif_ap > 0.6 and exif_ap == pytest.approx(upright_ap, abs=0.1)


@pytest.mark.slow
def test_odd_but_valid_images_are_detected_like_the_plain_one(zoo, zoo_run):
    root, ids = zoo
    ground_truth = load_coco(root / "ann.json")
    results = json.loads((zoo_run[0] / "results.json").read_text())
    plain = coco_bbox_metrics(ground_truth, results, [ids[EASY_IMAGE]])["AP"]
    for name in ("alpha.png", "cmyk.jpg", "sixteen.png"):
        assert coco_bbox_metrics(ground_truth, results, [ids[name]])["AP"] == pytest.approx(plain, abs=0.1), name
    records = {r["file_name"]: r for r in read_jsonl(zoo_run[0] / "records.jsonl")}
    assert records["huge.jpg"]["n_boxes"] > 0  # the 10000x8000 image ran; its shapes were found


# --- command-line errors: "error: <message>", exit code 2, no traceback ---------------------------


def run_cli(tool, capsys, *args):
    code = tool.main([*args, "--quiet"])
    return code, capsys.readouterr().err


def test_malformed_annotation_json_is_named(eval_coco_tool, capsys, tmp_path):
    (tmp_path / "ann.json").write_text('{"images": [')
    code, err = run_cli(eval_coco_tool, capsys, "--ann", str(tmp_path / "ann.json"), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: annotation file {tmp_path / 'ann.json'} is not valid json")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["images"][1].pop("width"), "images[1] (id 2): 'width' must be a positive integer, got None"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0] (id 1): bbox [1, 2, 3] is not a list"),
        (lambda d: d["annotations"][0].update(category_id=99), "annotations[0] (id 1): category_id 99 is not among"),
        (lambda d: d.pop("categories"), "is not a COCO instances file: missing ['categories']"),
    ],
    ids=["image-without-width", "short-bbox", "unknown-category", "no-categories"],
)
def test_an_annotation_file_with_a_wrong_entry_names_it(eval_coco_tool, capsys, tmp_path, change, message):
    data = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    change(data)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    code, err = run_cli(eval_coco_tool, capsys, "--ann", str(tmp_path / "ann.json"), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: annotation file ") and message in err


@pytest.mark.slow
def test_categories_that_do_not_cover_the_model_classes_are_named(eval_coco_tool, capsys, tmp_path):
    data = json.loads(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    for category in data["categories"][:2]:
        category["name"] = category["name"] + "_renamed"
    (tmp_path / "ann.json").write_text(json.dumps(data))
    code, err = run_cli(eval_coco_tool, capsys, "--ann", str(tmp_path / "ann.json"), "--out", str(tmp_path / "o"))
    assert code == 2
    assert err.startswith("error: yolov8p_shapes.pt: 2 class name(s) not among the dataset's categories: "
                          "['circle', 'octagon']")


@pytest.mark.slow
def test_an_image_folder_with_none_of_the_images_is_named(eval_coco_tool, capsys, tmp_path):
    code, err = run_cli(eval_coco_tool, capsys, "--images", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2 and "none of the 500 images of" in err and f"is in {tmp_path}" in err


@pytest.mark.slow
def test_a_missing_weights_file_is_named(eval_coco_tool, capsys, tmp_path):
    code, err = run_cli(eval_coco_tool, capsys, "--base", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"))
    assert code == 2 and err == f"error: weights file not found: {tmp_path / 'nope.pt'}\n"


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b""], ids=["text", "empty"])
def test_a_weights_file_that_is_not_a_checkpoint_is_named(eval_coco_tool, capsys, tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    code, err = run_cli(eval_coco_tool, capsys, "--saver", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: cannot load {tmp_path / 'bad.pt'} as an Ultralytics YOLO model")


@pytest.mark.slow
def test_a_file_ultralytics_loads_but_cannot_run_is_refused(eval_coco_tool, capsys, tmp_path):
    ann = assets.asset_path(assets.DEMO_ANNOTATIONS)
    code, err = run_cli(eval_coco_tool, capsys, "--saver", str(ann), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: {ann} is not a PyTorch YOLO detection model")


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--t", "nan", "threshold must be a number >= 0 (confidences are in [0, 1]), got nan"),
        ("--t", "-0.1", "threshold must be a number >= 0 (confidences are in [0, 1]), got -0.1"),
        ("--t", "abc", "could not convert string to float: 'abc'"),
        ("--min-score", "1.5", "must be a number in [0, 1], got '1.5'"),
        ("--batch", "0", "must be an integer >= 1, got '0'"),
        ("--limit", "-3", "must be an integer >= 1, got '-3'"),
    ],
)
def test_a_setting_out_of_range_is_a_usage_error_naming_it(eval_coco_tool, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        eval_coco_tool.main([flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"error: argument {flag}: {message}" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_threshold_above_one_runs_and_says_nothing_exits(eval_coco_tool, capsys, tmp_path):
    code = eval_coco_tool.main(["--t", "1.5", "--limit", "4", "--out", str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "note: --t 1.5 > 1: no image can exit" in captured.err
    assert "| cascade |" in captured.out and "t > 1: no image can exit" in captured.out
