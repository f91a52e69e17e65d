"""Matplotlib figures of sweeps (written as PNG, with the non-interactive Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from tinysaver_det.core.selection import RMatch
from tinysaver_det.core.cascade_model import StageRow

if TYPE_CHECKING:  # the study module is detection's; plots only reads its fields
    from tinysaver_det.detection.studies.depths import DepthStudy


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Write ``fig`` as PNG at ``path`` (folders created) and release it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _figure():
    return pyplot().subplots(figsize=(6, 4.5), dpi=120)


def _save(fig, ax, path: str | Path, title: str, note: str | None) -> Path:
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if note:
        fig.text(0.01, 0.01, note, fontsize=6, va="bottom")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    return save_figure(fig, path)


def plot_performance_vs_cost(
    curves: Mapping[str, Sequence[StageRow]],
    statics: Mapping[str, tuple[float, float]],
    path: str | Path,
    metric: str = "AP",
    cost_label: str = "GFLOPs / image",
    note: str | None = None,
) -> Path:
    """One line per cascade (its sweep rows) and one marker per static model ``{name: (cost, value)}``."""
    fig, ax = _figure()
    for name, rows in curves.items():
        ordered = sorted(rows, key=lambda row: row.cost)
        ax.plot([r.cost for r in ordered], [r.metrics[metric] for r in ordered], marker=".", ms=3, label=name)
    for name, (cost, value) in statics.items():
        ax.scatter([cost], [value], marker="*", s=120, zorder=3, label=name)
    ax.set_xlabel(cost_label)
    ax.set_ylabel(metric)
    return _save(fig, ax, path, f"{metric} vs {cost_label}", note)


def plot_exit_ratio(rows: Sequence[StageRow], path: str | Path) -> Path:
    """Share of images answered by the saver, against the threshold."""
    fig, ax = _figure()
    ax.plot([r.threshold for r in rows], [r.exit_ratio for r in rows], marker=".", ms=3, label="exit ratio")
    ax.set_xlabel("threshold t")
    ax.set_ylabel("exit ratio r")
    return _save(fig, ax, path, "Exit ratio vs threshold", None)


def plot_subset_performance(matched: RMatch, path: str | Path, metric: str = "AP") -> Path:
    """Saver and base on the early-exited subset against the exit ratio, r_match marked (paper Fig. 3)."""
    fig, ax = _figure()
    ax.plot(matched.exit_ratios, matched.saver, marker=".", ms=3, label=f"saver {metric} on exited")
    ax.plot(matched.exit_ratios, matched.base, marker=".", ms=3, label=f"base {metric} on exited")
    ax.axvline(matched.r_match, color="k", ls="--", lw=1, label=f"r_match = {matched.r_match:.3f}")
    ax.set_xlabel("exit ratio r (images with the highest confidence)")
    ax.set_ylabel(f"{metric} on the exited subset")
    return _save(fig, ax, path, f"Subset {metric}: saver vs base", None)


def plot_depths(study: DepthStudy, path: str | Path) -> Path:
    """PNG: each chain's calibration points, both fronts, the single models (left); the fronts on held-out (right)."""
    unit, primary = study.unit, "AP"
    figure, axes = pyplot().subplots(1, 2, figsize=(13, 5), sharey=True)
    for sweep_ in study.sweeps:
        axes[0].scatter([r.costs[unit] for r in sweep_.calibration], [r.metrics[primary] for r in sweep_.calibration],
                        s=6, alpha=0.35, label="->".join(sweep_.models))
    for ax, split in zip(axes, ("calibration", "held_out")):
        for front, style, label in ((study.two_stage_front, "-o", "best 2-stage front"),
                                    (study.deep_front, "--s", "front with deeper chains")):
            rows = [getattr(p, split) for p in front]
            ax.plot([r.costs[unit] for r in rows], [r.metrics[primary] for r in rows], style, ms=3, lw=1.5, label=label)
        statics = [pair[0 if split == "calibration" else 1] for pair in study.static]
        ax.scatter([r.costs[unit] for r in statics], [r.metrics[primary] for r in statics], marker="*", s=160,
                   color="black", zorder=5, label="single models")
        for name, row in zip(study.names, statics):
            ax.annotate(name, (row.costs[unit], row.metrics[primary]), textcoords="offset points", xytext=(6, -12))
        ax.set_xlabel(f"{unit} per image")
        ax.set_title("calibration (fronts chosen here)" if split == "calibration" else "held-out (same thresholds)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("COCO AP")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)
