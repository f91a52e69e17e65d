"""Every subcommand's wrong inputs end with one ``error: ...`` line naming the input and exit code 2,
never a traceback; and inputs that do not belong together are refused.

Most cases call ``tinysaver_det.cli.main(argv)`` in-process (an argparse usage error is argparse's
``usage: ...`` then ``<prog>: error: argument --x: ...``, also exit 2). The run directories come from
one real ``eval --full`` run on 13 images (``full_run`` in conftest), copied and changed per case.
"""

import errno
import json
import shutil

import pytest

from tinysaver_det import assets
from tinysaver_det.cli import main
from tinysaver_det.errors import exit_code_of
from tinysaver_det.io import read_jsonl


def run_cli(argv, capsys):
    """Exit code and stderr of ``python -m tinysaver_det <argv>``."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error: " in last, err
    for fragment in fragments:
        assert str(fragment) in last, (fragment, last)
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, err  # one message line (argparse's usage lines aside)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


# Cases that fail before any model runs: (id, argv, fragments the error line names). {file} is a regular file.
QUICK = [
    ("eval --t nan", ["eval", "--t", "nan"], ["--t"]),
    ("eval --t -0.5", ["eval", "--t", "-0.5"], ["--t"]),
    ("eval --device 0 without cuda", ["eval", "--device", "0", "--out", "{tmp}/never"], ["--device", "'0'"]),
    ("eval --batch 0", ["eval", "--batch", "0"], ["--batch"]),
    ("eval --ann missing", ["eval", "--ann", "{tmp}/missing.json", "--out", "{tmp}/o"], ["missing.json"]),
    ("eval --ann not json", ["eval", "--ann", "{file}", "--out", "{tmp}/o"], ["{file}", "not valid json"]),
    ("eval --images wrong folder", ["eval", "--images", "{tmp}", "--out", "{tmp}/o"], ["is it the right image folder"]),
    ("eval --out a file", ["eval", "--limit", "2", "--out", "{file}"], ["{file}", "is a file"]),
    ("eval --out below a file", ["eval", "--limit", "2", "--out", "{file}/run"], ["{file}", "Not a directory"]),
    ("eval --saver missing", ["eval", "--limit", "2", "--saver", "{tmp}/none.pt", "--out", "{tmp}/o"], ["none.pt"]),
    ("predict-coco mmdet --imgsz", ["predict-coco", "--weights", "configs/tinysaver_demo_rtmdet-tiny_coco-subset.py",
                                    "--imgsz", "320", "--out", "{tmp}/p.jsonl"], ["--imgsz", "test pipeline"]),
    ("multistage-run mmdet --imgsz", ["multistage-run", "--weights", "demo:pico",
                                      "configs/tinysaver_demo_rtmdet-tiny_coco-subset.py", "--t", "0.2", "--imgsz",
                                      "320", "--out", "{tmp}/m"], ["--imgsz", "test pipeline"]),
    ("predict-coco mmdet --features", ["predict-coco", "--weights", "configs/tinysaver_demo_rtmdet-tiny_coco-subset.py",
                                       "--features", "--out", "{tmp}/p.jsonl"], ["captures no saver features"]),
    ("predict-coco --device cuda:3", ["predict-coco", "--weights", "demo:pico", "--device", "cuda:3", "--out", "{tmp}/p.jsonl"], ["--device"]),
    ("predict-coco --out below a file", ["predict-coco", "--weights", "demo:pico", "--limit", "2", "--out", "{file}/p.jsonl"], ["output folder {file} is a file"]),
    ("multistage-run --t nan", ["multistage-run", "--weights", "demo:pico", "demo:s", "--t", "nan", "--out", "{tmp}/m"], ["--t"]),
    ("multistage-run --device 0", ["multistage-run", "--weights", "demo:pico", "demo:s", "--t", "0.2", "--device", "0", "--out", "{tmp}/m"], ["--device"]),
    ("sweep --thresholds nan", ["sweep", "--records", "{tmp}", "--thresholds", "nan"], ["--thresholds"]),
    ("sweep --thresholds -0.5", ["sweep", "--records", "{tmp}", "--thresholds", "-0.5"], ["--thresholds"]),
    ("sweep --saver-gflops -1", ["sweep", "--ann", "a", "--saver-json", "s", "--base-json", "b", "--saver-gflops", "-1", "--base-gflops", "2"], ["--saver-gflops"]),
    ("sweep --saver-gflops nan", ["sweep", "--ann", "a", "--saver-json", "s", "--base-json", "b", "--saver-gflops", "nan", "--base-gflops", "2"], ["--saver-gflops"]),
    ("sweep --base-gflops 0", ["sweep", "--ann", "a", "--saver-json", "s", "--base-json", "b", "--saver-gflops", "1", "--base-gflops", "0"], ["--base-gflops"]),
    ("sweep --records not a run", ["sweep", "--records", "{tmp}"], ["{tmp}", "not a run directory"]),
    ("table --thresholds nan", ["table", "--runs", "{tmp}", "--thresholds", "nan"], ["--thresholds"]),
    ("table --max-drops -1", ["table", "--runs", "{tmp}", "--max-drops", "-1"], ["--max-drops"]),
    ("table --runs not a run", ["table", "--runs", "{tmp}/none"], ["none", "not a run directory"]),
    ("pick --gflops -1", ["pick", "--gflops", "-1"], ["--gflops"]),
    ("pick --max-drop nan", ["pick", "--max-drop", "nan"], ["--max-drop"]),
    ("pick --latency-ms inf", ["pick", "--latency-ms", "inf"], ["--latency-ms"]),
    ("pick --model missing file", ["pick", "--model", "a={tmp}/a.jsonl", "--model", "b={tmp}/b.jsonl"], ["a.jsonl"]),
    ("routers --l2 -1", ["routers", "--l2", "-1"], ["--l2"]),
    ("pick --model without =", ["pick", "--model", "pico"], ["NAME=PREDICTIONS.jsonl", "'pico'"]),
    ("multistage-front --budgets 0", ["multistage-front", "--budgets", "0"], ["--budgets"]),
    ("multistage-front --levels 0", ["multistage-front", "--levels", "0"], ["--levels"]),
    ("select-saver wrong record", ["select-saver", "--base", "b", "1", "{file}", "{file}", "--saver", "s", "1", "{file}", "{file}", "--out", "{tmp}/sel"], ["{file}"]),
    ("select-saver cost nan", ["select-saver", "--base", "b", "nan", "{file}", "{file}", "--saver", "s", "1", "{file}", "{file}", "--out", "{tmp}/sel"], ["cost of 'b' must be a finite number > 0"]),
    ("select-saver cost -1", ["select-saver", "--base", "b", "1", "{file}", "{file}", "--saver", "s", "-1", "{file}", "{file}", "--out", "{tmp}/sel"], ["cost of 's' must be a finite number > 0"]),
    ("test-mmdet config missing", ["test-mmdet", "{tmp}/none.py"], ["config file not found", "none.py"]),
    ("pick --model not predictions", ["pick", "--model", "a={file}", "--model", "b={file}"], ["{file}: line 1 is not a prediction row"]),
    ("routers --model not predictions", ["routers", "--model", "a={file}", "--model", "b={file}"], ["{file}: line 1 is not a prediction row"]),
    ("multistage-front --model not predictions", ["multistage-front", "--model", "a={file}", "--model", "b={file}", "--model", "c={file}"], ["{file}: line 1 is not a prediction row"]),
    ("routers --saver unknown", ["routers", "--saver", "nobody"], ["--saver 'nobody' is none of the models given with --model"]),
    ("routers --reference unknown", ["routers", "--reference", "nobody"], ["--reference 'nobody' is none of the models"]),
    ("post-evaluator --base unknown", ["post-evaluator", "--base", "nobody"], ["--base 'nobody' is none of the models"]),
    ("routers --levels -1", ["routers", "--levels", "-1"], ["--levels"]),
    ("routers --context-levels 1", ["routers", "--context-levels", "1"], ["--context-levels"]),
    ("pick --levels -1", ["pick", "--levels", "-1"], ["--levels"]),
    ("select-saver record not an npz", ["select-saver", "--base", "b", "1", "{tmp}/x.npz", "{tmp}/x.npz", "--saver", "s", "0.1", "{tmp}/x.npz", "{tmp}/x.npz", "--out", "{tmp}/sel"], ["{tmp}/x.npz: not a readable .npz file"]),
    ("predict-coco --weights an empty file", ["predict-coco", "--weights", "{tmp}/empty.pt", "--out", "{tmp}/p.jsonl"], ["cannot load {tmp}/empty.pt"]),
    ("predict --source a folder without images", ["predict", "--source", "{tmp}/empty_folder", "--out", "{tmp}/p"], ["--source: No images or videos found in {tmp}/empty_folder"]),
]


@pytest.mark.usefixtures("assets_folder")  # the demo defaults
@pytest.mark.parametrize("argv, fragments", [case[1:] for case in QUICK], ids=[case[0] for case in QUICK])
def test_each_subcommand_answers_a_wrong_input_with_one_error_line(argv, fragments, a_file, tmp_path, capsys):
    fill = lambda text: text.replace("{tmp}", str(tmp_path)).replace("{file}", str(a_file))  # noqa: E731
    (tmp_path / "x.npz").write_text("x")  # no npz
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "empty_folder").mkdir()
    code, err = run_cli([fill(a) for a in argv], capsys)
    assert_one_error(code, err, *(fill(f) for f in fragments))
    assert not (tmp_path / "never").exists()  # a missing device is refused before anything is written


@pytest.mark.usefixtures("assets_folder")  # the demo defaults
def test_a_tinysaver_cascade_config_given_as_the_base_is_one_error_naming_it(tmp_path, capsys):
    pytest.importorskip("mmdet")
    config = "configs/tinysaver_yolov8n_rtmdet-l_coco.py"
    code, err = run_cli(["eval", "--base", config, "--limit", "2", "--out", tmp_path / "o"], capsys)
    assert_one_error(code, err, config, "is a TinySaver cascade config, not a base detector config")


def test_test_mmdet_on_a_config_without_a_model_is_one_error_naming_it(tmp_path, capsys):
    pytest.importorskip("mmdet")
    config = tmp_path / "empty.py"
    config.write_text("")
    code, err = run_cli(["test-mmdet", config], capsys)
    assert_one_error(code, err, f"{config}: no model dict, not TinySaverDetector")


def test_a_depth_study_of_two_models_is_one_error(tmp_path, capsys):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg", "width": 10, "height": 10}],
                               "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    row = {"image_id": 1, "boxes": [], "scores": [], "category_ids": [], "gflops": 1.0, "seconds": 0.0}
    models = []
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
        models += ["--model", f"{name}={tmp_path / name}.jsonl"]
    code, err = run_cli(["multistage-front", "--ann", ann, *models, "--out", tmp_path / "m"], capsys)
    assert_one_error(code, err, "a depth study needs at least 3 models (--model), got ['a', 'b']")


def test_the_official_codino_config_without_its_checkout_names_the_variable(capsys, monkeypatch):
    pytest.importorskip("mmdet")
    monkeypatch.delenv("MMDET_CHECKOUT", raising=False)
    code, err = run_cli(["test-mmdet", "configs/tinysaver_yolov8n_codino-swin-l_official_coco.py"], capsys)
    assert_one_error(code, err, "MMDET_CHECKOUT")


@pytest.mark.parametrize("number, name", [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied"),
                                          (errno.ENOTDIR, "Not a directory")])
def test_an_os_error_on_an_input_or_an_output_is_one_line_naming_the_file(number, name, capsys):
    def tool():
        raise OSError(number, name, "runs/x/records.jsonl")

    assert exit_code_of(tool) == 2
    assert capsys.readouterr().err == f"error: runs/x/records.jsonl: {name}\n"


def test_ctrl_c_during_a_subcommand_is_a_message_not_a_traceback(capsys):
    def tool():
        raise KeyboardInterrupt

    assert exit_code_of(tool) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


# --- inputs checked against each other, from one real run --------------------------------------------


def partial_copy(run, destination, keep):
    """``run`` as if killed after ``keep`` images: its records cut there."""
    out = shutil.copytree(run, destination)
    records = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(records[:keep]))
    for name in ("results.json", "summary.json"):
        (out / name).unlink()
    return out


def test_a_sweep_of_an_unfinished_run_is_refused_unless_allowed_and_then_says_partial(full_run, tmp_path, capsys):
    partial = partial_copy(full_run, tmp_path / "partial", 5)
    code, err = run_cli(["sweep", "--records", partial, "--out", tmp_path / "sweep"], capsys)
    assert_one_error(code, err, f"run {partial} did not finish: 5 of 13 images are done", "--allow-partial")
    assert not (tmp_path / "sweep").exists()

    code, err = run_cli(["sweep", "--records", partial, "--allow-partial", "--out", tmp_path / "sweep"], capsys)
    assert code == 0, err
    assert f"partial run {partial}: 5 of 13 images" in (tmp_path / "sweep" / "sweep.md").read_text()


def test_a_sweep_with_another_annotation_file_than_the_runs_is_refused(full_run, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(assets.asset_path(assets.DEMO_ANNOTATIONS).read_text())
    code, err = run_cli(["sweep", "--records", full_run, "--ann", other, "--out", tmp_path / "s"], capsys)
    assert_one_error(code, err, f"annotation file {other} is not the one run {full_run} was made with")


def test_a_table_of_runs_over_different_images_or_annotations_is_refused(full_run, tmp_path, capsys):
    fewer = partial_copy(full_run, tmp_path / "fewer", 10)
    code, err = run_cli(["table", "--runs", full_run, fewer, "--allow-partial", "--out", tmp_path / "t"], capsys)
    assert_one_error(code, err, f"runs {full_run} and {fewer} cover different images (13 and 10 images")

    code, err = run_cli(["table", "--runs", full_run, fewer, "--out", tmp_path / "t"], capsys)
    assert_one_error(code, err, f"run {fewer} did not finish: 10 of 13 images")

    relabelled = shutil.copytree(full_run, tmp_path / "relabelled")
    described = json.loads((relabelled / "run.json").read_text())
    described["annotation_sha256"] = "0" * 64
    (relabelled / "run.json").write_text(json.dumps(described))
    code, err = run_cli(["table", "--runs", full_run, relabelled, "--out", tmp_path / "t"], capsys)
    assert_one_error(code, err, "different annotation files")
    assert not (tmp_path / "t").exists()


def test_a_partial_table_says_so(full_run, tmp_path, capsys):
    partial = partial_copy(full_run, tmp_path / "partial", 5)
    code, err = run_cli(["table", "--runs", partial, "--allow-partial", "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    assert f"partial run {partial}: 5 of 13 images" in (tmp_path / "t" / "table.md").read_text()


def test_results_jsons_covering_fewer_images_are_said_in_the_output_and_the_table(full_run, small_set, tmp_path, capsys):
    results = json.loads((full_run / "results_saver.json").read_text())
    kept_images = sorted({r["image_id"] for r in results})[:4]
    saver_json = tmp_path / "saver.json"
    saver_json.write_text(json.dumps([r for r in results if r["image_id"] in kept_images]))
    argv = ["sweep", "--ann", small_set / "ann.json", "--saver-json", saver_json, "--base-json",
            full_run / "results_base.json", "--saver-gflops", "0.2", "--base-gflops", "4.5", "--out", tmp_path / "s"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert f"note: saver json {saver_json}: detections for 4 of 13 images" in out
    assert f"saver json {saver_json}: detections for 4 of 13 images" in (tmp_path / "s" / "sweep.md").read_text()


def test_limited_predictions_in_the_picker_and_the_router_tools_are_one_error(demo_slice, tmp_path, capsys):
    cut = tmp_path / "pico_predictions.jsonl"
    lines = demo_slice.predictions["pico"].read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:10]))
    models = ["--model", f"pico={cut}", "--model", f"s={demo_slice.predictions['s']}"]
    for command in (["pick", "--gflops", "2"], ["routers", "--no-context"]):
        code, err = run_cli([*command, "--ann", demo_slice.annotations, *models, "--out", tmp_path / command[0]], capsys)
        assert_one_error(code, err, f"{cut}: predictions of 'pico' cover")


# --- every model-running tool keeps going past an unreadable image; --resume retries it -----------------


@pytest.fixture
def one_image_missing(small_set, tmp_path):
    """The small set with its first image's file moved away (the file to put back)."""
    images = shutil.copytree(small_set / "images", tmp_path / "images")
    first = json.loads((small_set / "ann.json").read_text())["images"][0]["file_name"]
    moved = tmp_path / "moved.jpg"
    shutil.move(images / first, moved)
    return images, small_set / "ann.json", images / first, moved


@pytest.mark.slow
def test_resume_retries_an_image_recorded_missing_once_it_is_back(one_image_missing, full_run, tmp_path, capsys):
    images, annotations, path, moved = one_image_missing
    argv = ["eval", "--images", images, "--ann", annotations, "--t", "0.25", "--batch", "5", "--full", "--quiet",
            "--out", tmp_path / "run"]
    assert main([str(a) for a in argv]) == 0
    assert read_jsonl(tmp_path / "run" / "records.jsonl")[0]["status"] == "missing"
    shutil.move(moved, path)
    assert main([str(a) for a in [*argv, "--resume"]]) == 0
    records = read_jsonl(tmp_path / "run" / "records.jsonl")
    assert [r["status"] for r in records] == ["ok"] * 13
    for name in ("results.json", "results_saver.json", "results_base.json"):  # as if it had never been missing
        assert (tmp_path / "run" / name).read_bytes() == (full_run / name).read_bytes(), name


@pytest.mark.slow
def test_predict_coco_and_multistage_run_keep_going_past_an_unreadable_image(one_image_missing, tmp_path, capsys):
    images, annotations, path, _ = one_image_missing
    data = ["--images", images, "--ann", annotations, "--batch", "5", "--quiet"]
    assert main([str(a) for a in ["predict-coco", "--weights", "demo:pico", *data, "--out", tmp_path / "p.jsonl"]]) == 0
    assert "note: 1 images could not be read" in capsys.readouterr().out
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert len(rows) == 13 and rows[0]["status"] == "missing" and rows[0]["boxes"] == [] and rows[0]["gflops"] == 0

    argv = ["multistage-run", "--weights", "demo:pico", "demo:s", "--t", "0.2", *data, "--out", tmp_path / "m"]
    assert main([str(a) for a in argv]) == 0
    records = read_jsonl(tmp_path / "m" / "records.jsonl")
    assert len(records) == 13 and records[0]["status"] == "missing" and records[0]["stage"] is None
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["skipped_images"] == {"missing": 1} and summary["n_images"] == 13  # by status, as eval's
    assert json.loads((tmp_path / "m" / "errors.json").read_text())["skipped"][0]["status"] == "missing"


@pytest.mark.slow
@pytest.mark.usefixtures("assets_folder")  # the demo defaults
def test_run_json_records_the_image_size_that_ran(tmp_path, capsys):
    """--imgsz 250 runs at 256 (Ultralytics rounds up to the stride): run.json says 256."""
    argv = ["eval", "--limit", "2", "--imgsz", "250", "--quiet", "--out", tmp_path / "run"]
    assert main([str(a) for a in argv]) == 0
    described = json.loads((tmp_path / "run" / "run.json").read_text())
    assert described["saver"]["imgsz"] == described["base"]["imgsz"] == 256
