"""A deployment run (``tinysaver predict``'s library side): rows per image, unreadable files, resume."""

import json
import shutil

import pytest

from tinysaver_det import assets
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.io import read_jsonl

pytestmark = pytest.mark.slow

_TIMING = ("ms",)


@pytest.fixture(scope="module")
def cascade():
    from tinysaver_det.api import TinySaver

    return TinySaver("demo:pico", "demo:s", 0.25)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four demo images and one file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[4:8]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in _TIMING} for row in rows]


@pytest.fixture(scope="module")
def full(cascade, folder, tmp_path_factory):
    from tinysaver_det.predict_run import run_predictions

    out = tmp_path_factory.mktemp("full")
    summary = run_predictions(cascade, folder, out, conf=0.25, batch=2, save=True, progress=False)
    return out, summary


def test_every_image_has_a_row_with_routing_and_detections(cascade, folder, full):
    out, summary = full
    rows = read_jsonl(out / "predictions.jsonl")
    assert [r["source"] for r in rows] == [str(p.absolute()) for p in sorted(folder.glob("val_*.jpg"))] + [
        str((folder / "broken.jpg").absolute())]
    assert rows[-1]["status"] == "unreadable" and all(r["status"] == "ok" for r in rows[:-1])
    expected = cascade.predict(sorted(str(p) for p in folder.glob("val_*.jpg")), conf=0.25, batch=2)  # same batches
    for row, result in zip(rows, expected):
        assert (row["exited"], row["confidence"], row["stage"], row["frame"]) == (
            result.exited, result.confidence, result.stage, 0)
        assert [d["score"] for d in row["detections"]] == pytest.approx(result.boxes.conf.tolist())
        assert {d["name"] for d in row["detections"]} <= set(cascade.names.values())
        assert set(row["gflops"]) == set(row["ms"]) == {"saver", "base"}
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4 and summary["unreadable"] == 1
    assert summary["exit_ratio"] == sum(r["exited"] for r in rows[:-1]) / 4
    assert sorted(p.name for p in (out / "annotated").iterdir()) == sorted(p.name for p in folder.glob("val_*.jpg"))


def test_a_killed_run_resumes_to_the_same_rows(cascade, folder, full, tmp_path):
    from tinysaver_det.predict_run import run_predictions

    out, _ = full
    shutil.copy(out / "predict.json", tmp_path / "predict.json")
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "predictions.jsonl").write_text("".join(lines[:2]) + lines[2][:25])  # killed mid-write
    # The run-directory protocol of every tool: the same refusals, differences and flags as eval's.
    with pytest.raises(TinySaverInputError, match=r"already holds a run \(predict.json, predictions.jsonl\): pass --resume"):
        run_predictions(cascade, folder, tmp_path, progress=False)
    with pytest.raises(TinySaverInputError, match=r"other settings \(conf: 0.25 in the run, 0.5 now\)"):
        run_predictions(cascade, folder, tmp_path, conf=0.5, resume=True, progress=False)
    with pytest.raises(TinySaverInputError, match="resume and overwrite exclude each other"):
        run_predictions(cascade, folder, tmp_path, resume=True, overwrite=True, progress=False)
    assert (tmp_path / "predict.json").is_file()  # refused: nothing overwritten
    run_predictions(cascade, folder, tmp_path, batch=2, resume=True, progress=False)
    assert without_timing(read_jsonl(tmp_path / "predictions.jsonl")) == without_timing(
        read_jsonl(out / "predictions.jsonl"))
    assert json.loads((tmp_path / "summary.json").read_text())["images"] == 4


def test_a_video_gives_one_row_per_frame_and_one_drawn_video(tmp_path, capsys):
    import cv2

    from tests.videos import read_video, write_video
    from tinysaver_det.cli import main

    images = [cv2.imread(str(path)) for path in sorted(assets.asset_path(assets.DEMO_IMAGES).glob("*.jpg"))[:5]]
    video = write_video(tmp_path / "clip.avi", images, fps=5)
    out = tmp_path / "out"
    assert main(["predict", "--source", str(video), "--saver", "demo:pico", "--base", "demo:s", "--t", "0.25",
                 "--save", "--batch", "2", "--out", str(out), "--quiet"]) == 0
    rows = read_jsonl(out / "predictions.jsonl")
    assert [(r["source"], r["frame"]) for r in rows] == [(str(video.absolute()), f) for f in range(1, 6)]
    assert [p.name for p in (out / "annotated").iterdir()] == ["clip.mp4"]  # one drawn video, not a folder of frames
    drawn, fps = read_video(out / "annotated" / "clip.mp4")
    assert len(drawn) == len(rows) and fps == pytest.approx(5) and drawn[0].shape == images[0].shape
    assert "5 images (0 unreadable)" in capsys.readouterr().out
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:3]))  # stopped inside the video: it is redone whole
    killed = (out / "annotated" / "clip.mp4").read_bytes()  # and its drawn video too: what a killed run leaves
    (out / "annotated" / "clip.mp4").unlink()
    (out / "annotated" / "clip.partial.mp4").write_bytes(killed[: len(killed) // 2])
    assert main(["predict", "--source", str(video), "--saver", "demo:pico", "--base", "demo:s", "--t", "0.25",
                 "--save", "--batch", "2", "--out", str(out), "--quiet", "--resume"]) == 0
    assert [r["frame"] for r in read_jsonl(out / "predictions.jsonl")] == [1, 2, 3, 4, 5]
    assert [p.name for p in (out / "annotated").iterdir()] == ["clip.mp4"]
    assert len(read_video(out / "annotated" / "clip.mp4")[0]) == 5


def test_with_vid_stride_rows_and_the_drawn_video_hold_the_frames_taken(cascade, demo_video, tmp_path):
    from tests.videos import read_video
    from tinysaver_det.predict_run import run_predictions

    video, frames = demo_video
    run_predictions(cascade, video, tmp_path, batch=2, vid_stride=3, save=True, progress=False)
    expected = [r.frame for r in cascade.predict(str(video), batch=2, vid_stride=3)]
    assert [r["frame"] for r in read_jsonl(tmp_path / "predictions.jsonl")] == expected == [3, 6, 9]
    drawn, fps = read_video(tmp_path / "annotated" / "clip.mp4")
    assert len(drawn) == len(expected) and fps == pytest.approx(10 / 3, abs=0.01)  # as long as the source


def test_a_second_writer_of_the_same_folder_is_refused(cascade, folder, tmp_path):
    import subprocess
    import sys

    from tinysaver_det.lock import RunLock

    with RunLock(tmp_path, command="another tinysaver predict"):
        code = ("from tinysaver_det.api import TinySaver\nfrom tinysaver_det.predict_run import run_predictions\n"
                f"run_predictions(TinySaver('demo:pico', 'demo:s', 0.25), {str(folder)!r}, {str(tmp_path)!r}, progress=False)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0 and "another tinysaver predict" in done.stderr
    assert not (tmp_path / "predictions.jsonl").exists()
