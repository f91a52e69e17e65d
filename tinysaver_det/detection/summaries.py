"""What a run measured: the summary objects of a cascade run and of a multi-stage run, and their tables.

They are built by :mod:`tinysaver_det.detection.runner` from the files of a run directory and written
as ``summary.json`` (``dataclasses.asdict``) and ``summary.md`` (``to_markdown``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinysaver_det.core.cost import FLOPS_CONVENTION
from tinysaver_det.detection.coco import STAT_KEYS

UNREADABLE_POLICY = (
    "an image that cannot be read stays in the evaluation as an image with no detections (AP over every "
    "annotated image, comparable with full-set numbers); exit ratio, GFLOPs/img and img/s count the images "
    "the models ran on"
)


@dataclass(frozen=True)
class EvalRow:
    """One line of the summary table: a system (the cascade, or one model alone) and its numbers.

    ``images_per_second`` counts model time (pre-processing, forward, NMS), not image decoding.
    """

    name: str
    metrics: dict
    gflops_per_image: float
    exit_ratio: float | None
    images_per_second: float


@dataclass(frozen=True)
class RunSummary:
    """What a run measured; ``rows[0]`` is the cascade.

    ``n_images`` counts every image of the dataset, ``skipped_images`` those that could not be read,
    by status (``missing``, ``unreadable``, ``size_mismatch``); ``wall_seconds`` is the last session's.
    """

    saver: str
    base: str
    threshold: float
    min_score: float
    confidence: str
    n_images: int
    batch_size: int
    rows: list[EvalRow]
    wall_seconds: float
    flops_convention: str
    uncounted_ops: dict
    skipped_images: dict
    unannotated_files: int
    unreadable_policy: str = UNREADABLE_POLICY

    @property
    def cascade(self) -> EvalRow:
        return self.rows[0]

    def to_markdown(self) -> str:
        """The summary table, with the FLOPs convention and what it leaves out."""
        header = ["system", *STAT_KEYS[:6], "GFLOPs/img", "exit ratio", "img/s"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            exit_ratio = "-" if row.exit_ratio is None else f"{row.exit_ratio:.3f}"
            cells = [row.name, *(f"{row.metrics[k]:.4f}" for k in STAT_KEYS[:6])]
            cells += [f"{row.gflops_per_image:.3f}", exit_ratio, f"{row.images_per_second:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        not_counted = "; ".join(f"{model}: {', '.join(ops) or 'none'}" for model, ops in self.uncounted_ops.items())
        lines += [
            "",
            f"{self.n_images} images, threshold t = {self.threshold:g} ({self.confidence} score of boxes >= "
            f"{self.min_score:g}), batch {self.batch_size}, {self.wall_seconds:.1f} s wall-clock.",
            f"GFLOPs per image at the input shapes actually run; {FLOPS_CONVENTION}. Not counted: {not_counted}.",
            "img/s: model time only (pre-processing, forward, NMS), image decoding excluded.",
            self._skipped_line(),
        ]
        if self.unannotated_files:
            lines.append(
                f"{self.unannotated_files} image file(s) in the image folder are not in the annotation file: "
                "not evaluated, listed in errors.json."
            )
        if self.threshold > 1:
            lines.append("t > 1: no image can exit (confidences are in [0, 1]); every image went to the base.")
        return "\n".join(lines) + "\n"

    def _skipped_line(self) -> str:
        count = sum(self.skipped_images.values())
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(self.skipped_images.items()))
        return (
            f"Skipped: {count} image(s) that could not be read{f' ({by_status})' if count else ''}, "
            f"listed in errors.json; {self.unreadable_policy}."
        )


@dataclass(frozen=True)
class MultiStageSummary:
    """What a multi-stage run measured (COCO metrics by pycocotools on the images run).

    ``gflops_per_image`` and ``ms_per_image`` count the stages each image went through (model time
    only, image decoding excluded); ``stage_ratios`` is the share of images answered at each stage.
    Images that could not be read (``skipped_images``, listed with their status in ``records.jsonl``)
    stay in the COCO metrics as images with no detection; costs and ratios are over the images run.
    """

    models: list[str]
    thresholds: list[float]
    confidences: list[str]
    n_images: int
    batch_size: int
    metrics: dict
    gflops_per_image: float
    ms_per_image: float
    stage_ratios: list[float]
    wall_seconds: float
    flops_convention: str
    skipped_images: int = 0

    def to_markdown(self) -> str:
        header = ["cascade", *STAT_KEYS[:3], "GFLOPs/img", "ms/img", "stage ratios"]
        cells = [" -> ".join(self.models), *(f"{self.metrics[k]:.4f}" for k in STAT_KEYS[:3]),
                 f"{self.gflops_per_image:.3f}", f"{self.ms_per_image:.1f}",
                 " / ".join(f"{r:.3f}" for r in self.stage_ratios)]
        thresholds = ", ".join(f"{t:g}" for t in self.thresholds)
        return "\n".join([
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(cells) + " |", "",
            f"{self.n_images} images, thresholds ({thresholds}), confidences ({', '.join(self.confidences)}), "
            f"batch {self.batch_size}, {self.wall_seconds:.1f} s wall-clock; {FLOPS_CONVENTION}."
            + (f" {self.skipped_images} images could not be read (no detection; see records.jsonl)."
               if self.skipped_images else ""),
        ]) + "\n"
