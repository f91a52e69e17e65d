"""Percentile bootstrap over samples: how far a number measured on a few hundred images may move.

A threshold picked on a calibration split is checked on a held-out split of a few hundred images;
the held-out AP and cost are themselves estimates. Resampling the held-out images with replacement
and recomputing the statistic gives a percentile interval (Efron's percentile bootstrap). The
statistic sees the resampled indices, so it can be anything computed from images: a mean cost, or a
COCO AP over the resampled images (duplicates counted as separate images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile interval: ``low``/``high`` at ``level`` from ``replicates`` resamples (``seed``)."""

    low: float
    high: float
    level: float
    replicates: int
    seed: int

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level, "replicates": self.replicates,
                "seed": self.seed}


def bootstrap_intervals(
    statistics: dict[str, Callable[[np.ndarray], float]],
    n_samples: int,
    replicates: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapInterval]:
    """Percentile intervals of several statistics over the same resamples of ``n_samples`` samples.

    Args:
        statistics: ``{name: f(indices) -> float}``; ``indices`` is an (n_samples,) int array drawn
            with replacement.
        n_samples: how many samples (images) there are.
        replicates: number of resamples.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        seed: seed of the resampling (the same seed gives the same interval).

    >>> values = np.arange(100.0)
    >>> interval = bootstrap_intervals({"mean": lambda i: values[i].mean()}, 100, seed=0)["mean"]
    >>> 44 < interval.low < 49.5 < interval.high < 55
    True
    """
    if n_samples < 1:
        raise ValueError(f"bootstrap needs at least one sample, got {n_samples}")
    if replicates < 1 or not 0 < level < 1:
        raise ValueError(f"replicates must be >= 1 and level in (0, 1), got {replicates}, {level}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_samples, size=(replicates, n_samples))
    values = {name: np.array([f(indices) for indices in draws], dtype=np.float64) for name, f in statistics.items()}
    tail = (1 - level) / 2 * 100
    return {
        name: BootstrapInterval(float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)), level, replicates,
                                seed)
        for name, v in values.items()
    }
