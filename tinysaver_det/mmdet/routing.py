"""The per-image routing of a TinySaverDetector test run, gathered across ranks by mmengine's Evaluator."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmdet.registry import METRICS

from tinysaver_det.io import atomic_write_json
from tinysaver_det.mmdet.detector import ROUTING_KEY


@METRICS.register_module()
class TinySaverRouting(BaseMetric):
    """Exit ratio and GFLOPs per image of a cascade run, and its per-image routing file.

    A metric rather than a hook because mmengine's Evaluator already gathers every rank's results
    in dataset order and drops the distributed sampler's padding, so one file covers the whole
    dataset however many processes ran.

    Args:
        out_file: where rank 0 writes the routing, a json list sorted by ``image_id`` of
            ``{image_id, confidence, exited, n_boxes, saver_gflops, base_gflops, seconds}`` (the
            fields of :class:`~tinysaver_det.detection.cascade.ImageRecord`). ``None`` writes nothing;
            ``tools/test_mmdet.py`` sets ``<work_dir>/routing.json``.
        collect_device: ``'cpu'`` or ``'gpu'``, how results are gathered across ranks.
        prefix: prefix of the metric names (``tinysaver/exit_ratio``...).
    """

    default_prefix = "tinysaver"

    def __init__(self, out_file: str | None = None, collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_file = out_file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if ROUTING_KEY not in sample:
                raise KeyError(f"data sample has no {ROUTING_KEY!r} routing record: is the model a TinySaverDetector?")
            self.results.append(dict(sample[ROUTING_KEY]))

    def compute_metrics(self, results: list) -> dict:
        rows = sorted(results, key=lambda row: row["image_id"])
        if self.out_file is not None:
            atomic_write_json(self.out_file, rows, indent=1)
        saver = np.array([row["saver_gflops"] for row in rows])
        base = np.array([row["base_gflops"] for row in rows])
        return {
            "exit_ratio": float(np.mean([row["exited"] for row in rows])),
            "gflops_per_image": float(np.mean(saver + base)),
            "saver_gflops_per_image": float(np.mean(saver)),
            "base_gflops_per_image": float(np.mean(base)),
        }
