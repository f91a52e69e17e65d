"""One place that says where the shipped assets (COCO subset, demo models) live.

``TINYSAVER_ASSETS`` wins; otherwise ``../shared/assets`` beside the repository root is used when it
exists. A missing file is an error that names both the file and the variable, so a user on another
machine knows what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "TINYSAVER_ASSETS"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_ASSETS = _REPO_ROOT.parent / "shared" / "assets"

# The embedded default of ``tools/eval_coco.py`` (see ``shared/assets/MANIFEST.md``).
DEMO_SAVER = "demo/weights/yolov8p_shapes.pt"
DEMO_BASE = "demo/weights/yolov8s_shapes.pt"
DEMO_IMAGES = "demo/shapes/val/images"
#: The demo ladder (``demo/README.md``): pico (0.22 GFLOPs@256), n (1.31), s (4.59), cheapest first.
DEMO_LADDER = {
    "pico": "demo/weights/yolov8p_shapes.pt",
    "n": "demo/weights/yolov8n_shapes.pt",
    "s": "demo/weights/yolov8s_shapes.pt",
}
DEMO_ANNOTATIONS = "demo/shapes/val/instances_val.json"
COCO_IMAGES = "coco/val2017"
COCO_ANNOTATIONS = "coco/annotations/instances_val2017_subset.json"


class AssetNotFoundError(FileNotFoundError):
    """An asset is missing; the message names the file and how to point at another folder."""


def assets_root() -> Path:
    """The assets folder: ``$TINYSAVER_ASSETS``, else ``<repo>/../shared/assets`` when present."""
    configured = os.environ.get(ASSETS_ENV)
    if configured:
        root = Path(configured).expanduser()
        if not root.is_dir():
            raise AssetNotFoundError(f"{ASSETS_ENV}={configured!r} is not a directory")
        return root
    if _DEFAULT_ASSETS.is_dir():
        return _DEFAULT_ASSETS
    raise AssetNotFoundError(
        f"no assets folder: set {ASSETS_ENV} to the folder holding demo/ and coco/ "
        f"(default {_DEFAULT_ASSETS} does not exist)"
    )


def asset_path(relative: str) -> Path:
    """Absolute path of an asset given relative to the assets root; raises if it does not exist."""
    path = assets_root() / relative
    if not path.exists():
        raise AssetNotFoundError(
            f"missing asset {relative!r} (looked for {path}); set {ASSETS_ENV} to the folder holding it"
        )
    return path


def demo_weights(name: str) -> Path:
    """Weights of a demo ladder model by name, ``pico``/``n``/``s`` (a ``demo:`` prefix is accepted).

    >>> demo_weights("demo:n").name
    'yolov8n_shapes.pt'
    """
    key = name.removeprefix("demo:")
    if key not in DEMO_LADDER:
        raise ValueError(f"unknown demo model {name!r}; choose one of {sorted(DEMO_LADDER)}")
    return asset_path(DEMO_LADDER[key])
