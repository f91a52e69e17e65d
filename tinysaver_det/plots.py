"""Matplotlib figures of sweeps (written as PNG, with the non-interactive Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from tinysaver_det.core.selection import RMatch
from tinysaver_det.core.sweep import SweepRow


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
    curves: Mapping[str, Sequence[SweepRow]],
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


def plot_exit_ratio(rows: Sequence[SweepRow], path: str | Path) -> Path:
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
