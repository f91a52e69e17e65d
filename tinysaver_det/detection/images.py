"""Image decoding shared by every model of the cascade: each image is read once, as BGR uint8.

Decoding goes through OpenCV, as Ultralytics' own loader does, so predictions match Ultralytics'
``val`` on the same files. What happens to unusual files:

- grayscale, CMYK and 16-bit images are converted to 8-bit BGR (16-bit values are scaled, ``v >> 8``);
- an alpha channel is dropped: the colour channels are used as stored (Ultralytics does the same);
- EXIF orientation: COCO annotations describe the *stored* pixels, so the stored orientation is used
  unless only the EXIF-rotated image has the annotation's width and height (see :func:`load_image`);
- an empty, truncated or undecodable file raises :class:`UnreadableImageError`, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tinysaver_det.errors import TinySaverInputError

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END_OF_IMAGE = b"\xff\xd9"


class UnreadableImageError(TinySaverInputError):
    """An image file exists but cannot be used; the message names the file.

    ``status`` is the word a run's records use for it.
    """

    status = "unreadable"


class ImageSizeMismatchError(UnreadableImageError):
    """An image decodes to a size its annotation does not give, in either EXIF orientation: its
    boxes could not be compared with the annotation's."""

    status = "size_mismatch"


def _is_truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose last scan has no end-of-image marker after it was cut short.

    OpenCV 5 refuses such data; older versions decode it partially, fill the rest with gray and only
    print a warning, so the check is made here, independent of the OpenCV version. (Inside a scan,
    0xFF is always followed by 0x00 or a restart marker, so 0xFFD9 there is the real end.)
    """
    return data.startswith(_JPEG_MAGIC) and data.rfind(_JPEG_END_OF_IMAGE) < data.rfind(_JPEG_START_OF_SCAN)


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as an HxWx3 BGR uint8 array (the layout Ultralytics and mmdet take).

    Args:
        path: the image file.
        size: ``(width, height)`` the annotation gives for it. The stored pixels are used when they
            have this size (COCO's convention, also when an EXIF orientation tag is present); when
            only the EXIF-oriented image has it, that one is used, so boxes land where the annotation
            expects them. ``None``: the stored pixels.

    Raises:
        FileNotFoundError: the file does not exist.
        UnreadableImageError: the file is empty, a truncated JPEG, or cannot be decoded as an image.
        ImageSizeMismatchError: ``size`` matches neither orientation of the decoded image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from None
    if not data:
        raise UnreadableImageError(f"empty image file (0 bytes): {path}")
    if _is_truncated_jpeg(data):
        raise UnreadableImageError(f"truncated JPEG (no end-of-image marker after its last scan): {path}")
    buffer = np.frombuffer(data, np.uint8)
    stored = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if stored is None:
        raise UnreadableImageError(f"cannot decode image (not an image file, or corrupt): {path}")
    if size is None or _size(stored) == tuple(size):
        return stored
    oriented = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # OpenCV applies the EXIF orientation
    if _size(oriented) == tuple(size):
        return oriented
    raise ImageSizeMismatchError(
        f"image {path} decodes to {_size(stored)[0]}x{_size(stored)[1]} "
        f"(EXIF-oriented: {_size(oriented)[0]}x{_size(oriented)[1]}) but its annotation says "
        f"{size[0]}x{size[1]} (width x height)"
    )


def _size(image: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an HxWxC array."""
    return image.shape[1], image.shape[0]
