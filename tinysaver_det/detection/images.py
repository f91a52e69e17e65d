"""Image decoding shared by every model of the cascade: each image is read once, as BGR uint8."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class UnreadableImageError(ValueError):
    """An image file exists but cannot be decoded; the message names the file."""


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as an HxWx3 BGR uint8 array (the layout Ultralytics and mmdet take).

    Raises:
        FileNotFoundError: the file does not exist.
        UnreadableImageError: the file cannot be decoded as an image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(f"cannot decode image: {path}")
    return image
