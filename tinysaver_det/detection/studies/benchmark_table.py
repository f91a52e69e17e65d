"""A Table 4-style comparison: several saver/base pairs and the static models, AP against GFLOPs.

Every number comes from the cached sweeps (:mod:`tinysaver_det.detection.studies.thresholds`), so a table over
many pairs and thresholds costs one model run per pair (``eval --full``, read by :func:`pair_from_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tinysaver_det.core.cost import FLOPS_CONVENTION
from tinysaver_det.core.policy import ExitPolicy
from tinysaver_det.core.summary import cost_at_drop
from tinysaver_det.core.cascade_model import StageRow, default_thresholds
from tinysaver_det.core.tables import Table
from tinysaver_det.detection.cache import cache_from_run
from tinysaver_det.detection.run_directory import RUN_JSON
from tinysaver_det.detection.studies.thresholds import DetectionSweep, sweep_cascade

COLUMNS = ("system", "operating point", "t", "exit ratio", "AP", "AP50", "AP75", "GFLOPs/img", "GFLOPs vs base")
#: The AP drops of the detection benchmark table (1 and 0.5 COCO AP points, and none).
BENCHMARK_MAX_DROPS = (0.01, 0.005, 0.0)


@dataclass(frozen=True)
class PairSweep:
    """The sweep of one saver/base pair, with the models' names."""

    saver: str
    base: str
    sweep: DetectionSweep
    notes: tuple[str, ...] = ()  # what the table must say about the run ("partial run ...")

    @property
    def name(self) -> str:
        return f"{self.saver} -> {self.base}"


def pair_from_run(
    run_dir: str | Path, thresholds: Sequence[float], allow_partial: bool = False, workers: int = 1
) -> PairSweep:
    """Sweep one ``--full`` run directory over the default grid plus ``thresholds``, with the run's own rule.

    An unfinished run is refused unless ``allow_partial`` (then the pair's notes say it is partial).
    Pairs of one table must come from runs over the same inputs:
    :func:`~tinysaver_det.detection.run_inputs.check_same_inputs`.
    """
    described = json.loads((Path(run_dir) / RUN_JSON).read_text())
    grid = sorted(set(default_thresholds().tolist()) | set(thresholds))
    cache = cache_from_run(run_dir, allow_partial=allow_partial)
    sweep = sweep_cascade(cache, grid, ExitPolicy(confidence=described["confidence"], min_score=described["min_score"]),
                          workers=workers)
    return PairSweep(described["saver"]["name"], described["base"]["name"], sweep, cache.notes)


def _row(system: str, point: str, row: StageRow | None, metrics: dict, gflops: float, base_gflops: float | None) -> list:
    return [
        system,
        point,
        None if row is None else row.threshold,
        None if row is None else row.exit_ratio,
        metrics["AP"],
        metrics["AP50"],
        metrics["AP75"],
        gflops,
        None if base_gflops is None else gflops / base_gflops,
    ]


def benchmark_table(
    pairs: Sequence[PairSweep], thresholds: Sequence[float] = (0.25,), max_drops: Sequence[float] = BENCHMARK_MAX_DROPS
) -> Table:
    """One row per static model, then per pair: the cascade at each threshold and the cheapest
    threshold within each allowed AP drop of its base (absolute AP points; ``None`` cells when no
    threshold of the sweep gets there).

    Args:
        pairs: sweeps over one image set; each must contain the requested thresholds.
        thresholds: fixed thresholds to list (rows labelled ``t = ...``).
        max_drops: allowed AP drops vs the pair's base (0.01 = one point).
    """
    rows: list[list] = []
    statics: dict[str, tuple[dict, float]] = {}
    for pair in pairs:
        statics.setdefault(pair.saver, (pair.sweep.saver, pair.sweep.saver_gflops))
        statics.setdefault(pair.base, (pair.sweep.base, pair.sweep.base_gflops))
    rows += [_row(name, "static", None, metrics, gflops, None) for name, (metrics, gflops) in statics.items()]
    for pair in pairs:
        by_threshold = {row.threshold: row for row in pair.sweep.rows}
        for t in thresholds:
            if t not in by_threshold:
                raise ValueError(f"{pair.name}: threshold {t} is not in the sweep")
            row = by_threshold[t]
            rows.append(_row(pair.name, f"t = {t:g}", row, row.metrics, row.cost, pair.sweep.base_gflops))
        for max_drop in max_drops:
            point = cost_at_drop(pair.sweep.rows, "AP", pair.sweep.base["AP"], pair.sweep.base_gflops, max_drop)
            label = f"AP drop <= {max_drop * 100:g} pt"
            if point.cost is None:
                rows.append([pair.name, label, *[None] * (len(COLUMNS) - 2)])
            else:
                row = by_threshold[point.threshold]
                rows.append(_row(pair.name, label, row, row.metrics, row.cost, pair.sweep.base_gflops))
    note = (
        f"GFLOPs per image at the input shapes actually run; {FLOPS_CONVENTION}. "
        "GFLOPs vs base: the cascade's GFLOPs over its base's alone. "
        "AP drop rows: the cheapest threshold whose AP is within that many points of the base."
    )
    notes = [note for pair in pairs for note in pair.notes]
    if notes:
        note = f"{note} NOTE: {'; '.join(notes)}."
    return Table(COLUMNS, [tuple(r) for r in rows], note)
