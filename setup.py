"""tinysaver-det: tiny detectors as computational savers for large ones (TinySaver, Wang et al. 2024)."""

from setuptools import find_packages, setup

setup(
    name="tinysaver_det",
    version="0.1.0",
    description="TinySaver cascades for object detection: a tiny YOLOv8 answers the easy images",
    packages=find_packages(include=["tinysaver_det", "tinysaver_det.*"]),
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
        "mmdet": ["mmengine>=0.10", "mmcv>=2.0.0rc4,<2.2.0", "mmdet>=3.0,<4"],
        "dev": ["pytest", "scikit-learn"],
    },
)
