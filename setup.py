"""tinysaver-det: tiny detectors as computational savers for large ones (TinySaver, Wang et al. 2024)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "(.+?)"', Path(__file__).with_name("tinysaver_det").joinpath("version.py").read_text())[1]

setup(
    name="tinysaver_det",
    version=VERSION,
    description="TinySaver cascades for object detection: a tiny YOLOv8 answers the easy images",
    packages=find_packages(include=["tinysaver_det", "tinysaver_det.*"]),
    package_data={"tinysaver_det": ["py.typed"]},
    entry_points={"console_scripts": ["tinysaver = tinysaver_det.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=2",
        "pycocotools>=2.0.7",
        "tqdm",
        "matplotlib",
        "torch>=2.1",
        "torchvision",
        "ultralytics>=8.3",
    ],
    extras_require={
        # mmengine 0.10.7 finds `mmdet::` configs through pkg_resources, gone from setuptools 82 on.
        "mmdet": ["mmengine>=0.10", "mmcv>=2.0.0rc4,<2.2.0", "mmdet>=3.0,<4", "setuptools<82"],
        "dev": ["pytest", "scikit-learn"],
        # the compiled walk over r_match's exit sets (detection/coco/nested.py); without it, numpy
        "fast": ["numba>=0.60"],
        # benchmarks/bench_sweep_scale.py times faster-coco-eval beside tinysaver
        "bench": ["faster-coco-eval>=1.6"],
    },
)
