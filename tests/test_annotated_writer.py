"""Drawn output of ``predict --save`` (:class:`~tinysaver_det.predict_run.AnnotatedWriter`): one video per
source video, named only when complete; images stay images. Fake results (a frame that draws as itself)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from tests.videos import read_video
from tinysaver_det import predict_run
from tinysaver_det.predict_run import AnnotatedWriter


@dataclass
class FakeResult:
    """What the writer reads of a :class:`~tinysaver_det.api.CascadeResult`; it draws as its own image."""

    path: str
    frame: int
    orig_img: np.ndarray

    def plot(self) -> np.ndarray:
        return self.orig_img

    def save(self, filename: str) -> str:
        cv2.imwrite(filename, self.orig_img)
        return filename


def frames_of(path, numbers, frames):
    return [FakeResult(str(path), n, frames[n - 1]) for n in numbers]


def test_each_video_becomes_one_video_named_once_complete_and_an_image_stays_an_image(demo_video, tmp_path):
    video, frames = demo_video
    folder = tmp_path / "annotated"
    with AnnotatedWriter(folder, vid_stride=2) as drawn:
        for result in frames_of(video, [2, 4, 6, 8], frames):
            drawn.write(result)
        assert [p.name for p in folder.iterdir()] == ["clip.partial.mp4"]  # being written: not yet its name
        drawn.write(FakeResult(str(tmp_path / "photo.jpg"), 0, frames[0]))
        assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "photo.jpg"]
        for result in frames_of("rtsp://camera/live", [1, 2], frames):  # a stream: no file to read an fps from
            drawn.write(result)
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "live.mp4", "photo.jpg"]
    written, fps = read_video(folder / "clip.mp4")
    assert len(written) == 4 and written[0].shape == frames[0].shape
    assert fps == pytest.approx(10 / 2)  # the source's 10 fps over the stride: it lasts as long as its source
    written, fps = read_video(folder / "live.mp4")
    assert len(written) == 2 and fps == pytest.approx(30 / 2)  # 30 fps for a stream, as Ultralytics
    assert cv2.imread(str(folder / "photo.jpg")).shape == frames[0].shape


def test_an_interrupted_video_is_released_under_its_partial_name_and_rewritten_whole_later(demo_video, tmp_path):
    video, frames = demo_video
    folder = tmp_path / "annotated"
    with pytest.raises(KeyboardInterrupt):
        with AnnotatedWriter(folder) as drawn:
            for result in frames_of(video, [1, 2, 3], frames):
                drawn.write(result)
            raise KeyboardInterrupt
    assert [p.name for p in folder.iterdir()] == ["clip.partial.mp4"]  # never under the final name
    assert len(read_video(folder / "clip.partial.mp4")[0]) == 3  # released: readable up to where it stopped
    with AnnotatedWriter(folder) as drawn:  # a resumed run redoes the video whole
        for result in frames_of(video, range(1, 11), frames):
            drawn.write(result)
    assert [p.name for p in folder.iterdir()] == ["clip.mp4"]
    assert len(read_video(folder / "clip.mp4")[0]) == 10


def test_without_an_mp4_writer_a_video_is_drawn_as_avi(demo_video, tmp_path, monkeypatch):
    video, frames = demo_video
    monkeypatch.setattr(predict_run, "VIDEO_CODECS", ((".mp4", "XXXX"), *predict_run.VIDEO_CODECS[1:]))
    with AnnotatedWriter(tmp_path) as drawn:
        for result in frames_of(video, [1, 2], frames):
            drawn.write(result)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.avi"]
    assert len(read_video(tmp_path / "clip.avi")[0]) == 2
