"""tinysaver-det: tiny detectors as computational savers for large ones (TinySaver, Wang et al. 2024)."""

__version__ = "0.1.0"  # the one place: setup.py reads it, run.json records it
