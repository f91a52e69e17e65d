"""What a run measured: the summary of a run over a dataset (:class:`DatasetRunSummary`: images,
skipped images, batch, wall-clock), with the numbers of a K-stage run (:class:`MultiStageSummary`)
or of its two-model view (:class:`RunSummary`: saver/base rows), and their tables.

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


@dataclass(frozen=True, kw_only=True)
class DatasetRunSummary:
    """What every run over a dataset reports, whatever its cascade (the fields are keyword-only).

    ``n_images`` counts every image of the dataset, ``skipped_images`` those that could not be read,
    by status (``missing``, ``unreadable``, ``size_mismatch``; listed in ``errors.json``),
    ``unannotated_files`` the image files not in the annotation file; ``wall_seconds`` is the last
    session's.
    """

    n_images: int
    batch_size: int
    wall_seconds: float
    flops_convention: str
    skipped_images: dict
    unannotated_files: int
    unreadable_policy: str = UNREADABLE_POLICY

    def _skipped_line(self) -> str:
        count = sum(self.skipped_images.values())
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(self.skipped_images.items()))
        return (
            f"Skipped: {count} image(s) that could not be read{f' ({by_status})' if count else ''}, "
            f"listed in errors.json; {self.unreadable_policy}."
        )

    def _unannotated_lines(self) -> list[str]:
        if not self.unannotated_files:
            return []
        return [
            f"{self.unannotated_files} image file(s) in the image folder are not in the annotation file: "
            "not evaluated, listed in errors.json."
        ]


@dataclass(frozen=True, kw_only=True)
class RunSummary(DatasetRunSummary):
    """What a two-model cascade run measured (the saver/base view); ``rows[0]`` is the cascade."""

    saver: str
    base: str
    threshold: float
    min_score: float
    confidence: str
    rows: list[EvalRow]
    uncounted_ops: dict

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
            *self._unannotated_lines(),
        ]
        if self.threshold > 1:
            lines.append("t > 1: no image can exit (confidences are in [0, 1]); every image went to the base.")
        return "\n".join(lines) + "\n"

    def screen(self) -> str:
        """The short form printed by ``eval``: the table and the few lines that change a reading of it;
        the FLOPs convention in one clause, the ops it leaves out and the skip policy in ``summary.md``."""
        table = self.to_markdown().split("\n\n")[0]
        skipped = sum(self.skipped_images.values())
        lines = [table, "", f"{self.n_images} images, t = {self.threshold:g} ({self.confidence}), batch {self.batch_size}, "
                 f"{self.wall_seconds:.1f} s; GFLOPs = 2 * MACs at the shapes run; img/s: model time. "
                 "Details: summary.md."]
        if skipped:
            lines.append(f"Skipped {skipped} unreadable image(s) (errors.json): scored as images with no detections.")
        if self.unannotated_files:
            lines.append(f"{self.unannotated_files} image file(s) not in the annotation file: not evaluated.")
        if self.threshold > 1:
            lines.append("t > 1: no image can exit (confidences are in [0, 1]); every image went to the base.")
        return "\n".join(lines) + "\n"



@dataclass(frozen=True, kw_only=True)
class MultiStageSummary(DatasetRunSummary):
    """What a K-stage run measured (COCO metrics by pycocotools over every annotated image).

    ``gflops_per_image`` and ``ms_per_image`` count the stages each image went through (model time
    only, image decoding excluded); ``stage_ratios`` is the share of images answered at each stage.
    Images that could not be read (``skipped_images``) stay in the COCO metrics as images with no
    detection; costs and ratios are over the images run (:data:`UNREADABLE_POLICY`).
    """

    models: list[str]
    thresholds: list[float]
    confidences: list[str]
    metrics: dict
    gflops_per_image: float
    ms_per_image: float
    stage_ratios: list[float]

    def to_markdown(self) -> str:
        header = ["cascade", *STAT_KEYS[:3], "GFLOPs/img", "ms/img", "stage ratios"]
        cells = [" -> ".join(self.models), *(f"{self.metrics[k]:.4f}" for k in STAT_KEYS[:3]),
                 f"{self.gflops_per_image:.3f}", f"{self.ms_per_image:.1f}",
                 " / ".join(f"{r:.3f}" for r in self.stage_ratios)]
        thresholds = ", ".join(f"{t:g}" for t in self.thresholds)
        return "\n".join([
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(cells) + " |", "",
            f"{self.n_images} images, thresholds ({thresholds}), confidences ({', '.join(self.confidences)}), "
            f"batch {self.batch_size}, {self.wall_seconds:.1f} s wall-clock; {FLOPS_CONVENTION}.",
            *([self._skipped_line()] if self.skipped_images else []),
            *self._unannotated_lines(),
        ]) + "\n"
