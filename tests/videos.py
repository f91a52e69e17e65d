"""Small synthetic videos for the video tests: written and read back with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """``frames`` (BGR, all one size) as an MJPG ``.avi`` (OpenCV writes it on every platform)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame OpenCV decodes from ``path``, and the frame rate its header gives."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def closest_frame(image: np.ndarray, frames: list[np.ndarray]) -> int:
    """The 1-based number of the frame of ``frames`` that ``image`` shows (least mean absolute difference)."""
    differences = [np.abs(image.astype(np.int16) - frame.astype(np.int16)).mean() for frame in frames]
    return int(np.argmin(differences)) + 1
