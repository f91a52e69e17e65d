"""A Table 4-style comparison: several saver/base pairs and the static models, AP against GFLOPs.

Every number comes from the cached sweeps (:mod:`tinysaver_det.detection.studies.thresholds`), so a table over
many pairs and thresholds costs one model run per pair (``eval --full``, read by :func:`pair_from_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from tinysaver_det.core.cost import convention_note, expected_cost, gflops_in_convention
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


@dataclass(frozen=True)
class CostConvention:
    """How the table prints costs (:data:`~tinysaver_det.core.cost.FLOPS_CONVENTIONS`).

    Attributes:
        name: ``flops`` (GFLOPs at the shapes run, the default) or ``paper-macs`` (GMACs).
        size: ``(height, width)`` every image is costed at; None: the shape each image ran at.
        gflops_at_size: ``{model name: GFLOPs of one image at size}`` for every model of the table
            (needed with ``size``): a cascade then costs ``C_S + (1 - exit ratio) * C_B`` (Eq. 1).
    """

    name: str = "flops"
    size: tuple[int, int] | None = None
    gflops_at_size: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        gflops_in_convention(0.0, self.name)  # checks the name
        if (self.size is None) != (self.gflops_at_size is None):
            raise ValueError("a cost size and the models' GFLOPs at that size go together")

    @property
    def unit(self) -> str:
        return "GMACs" if self.name == "paper-macs" else "GFLOPs"

    def cost(self, gflops_as_run: float, saver: str | None, base: str | None, exit_ratio: float | None) -> float:
        """One row's cost: a static model's (``base`` None) or a cascade's at ``exit_ratio``."""
        if self.size is None:
            return gflops_in_convention(gflops_as_run, self.name)
        missing = [name for name in (saver, base) if name is not None and name not in self.gflops_at_size]
        if missing:
            raise ValueError(f"no GFLOPs at {self.size[1]}x{self.size[0]} given for {', '.join(missing)}")
        if base is None:
            return gflops_in_convention(self.gflops_at_size[saver], self.name)
        gflops = expected_cost(exit_ratio, self.gflops_at_size[saver], self.gflops_at_size[base])
        return gflops_in_convention(gflops, self.name)

    def curve(self, pair: PairSweep) -> list[StageRow]:
        """The pair's sweep rows with their costs in this convention (for the AP-vs-cost plot)."""
        return [replace(row, costs={"cost": self.cost(row.cost, pair.saver, pair.base, row.exit_ratio)})
                for row in pair.sweep.rows]


def _row(system: str, point: str, row: StageRow | None, metrics: dict, cost: float, base_cost: float | None) -> list:
    return [
        system,
        point,
        None if row is None else row.threshold,
        None if row is None else row.exit_ratio,
        metrics["AP"],
        metrics["AP50"],
        metrics["AP75"],
        cost,
        None if base_cost is None else cost / base_cost,
    ]


def benchmark_table(
    pairs: Sequence[PairSweep],
    thresholds: Sequence[float] = (0.25,),
    max_drops: Sequence[float] = BENCHMARK_MAX_DROPS,
    convention: CostConvention = CostConvention(),
) -> Table:
    """One row per static model, then per pair: the cascade at each threshold and the cheapest
    threshold within each allowed AP drop of its base (absolute AP points; ``None`` cells when no
    threshold of the sweep gets there).

    Args:
        pairs: sweeps over one image set; each must contain the requested thresholds.
        thresholds: fixed thresholds to list (rows labelled ``t = ...``).
        max_drops: allowed AP drops vs the pair's base (0.01 = one point).
        convention: the unit and input size of the cost columns (default: GFLOPs at the shapes
            run). The AP-drop rows pick their threshold on the costs as run either way.
    """
    rows: list[list] = []
    statics: dict[str, tuple[dict, float]] = {}
    for pair in pairs:
        statics.setdefault(pair.saver, (pair.sweep.saver, pair.sweep.saver_gflops))
        statics.setdefault(pair.base, (pair.sweep.base, pair.sweep.base_gflops))
    rows += [_row(name, "static", None, metrics, convention.cost(gflops, name, None, None), None)
             for name, (metrics, gflops) in statics.items()]
    for pair in pairs:
        by_threshold = {row.threshold: row for row in pair.sweep.rows}
        base_cost = convention.cost(pair.sweep.base_gflops, pair.base, None, None)

        def cascade_row(label: str, row: StageRow) -> list:
            cost = convention.cost(row.cost, pair.saver, pair.base, row.exit_ratio)
            return _row(pair.name, label, row, row.metrics, cost, base_cost)

        for t in thresholds:
            if t not in by_threshold:
                raise ValueError(f"{pair.name}: threshold {t} is not in the sweep")
            rows.append(cascade_row(f"t = {t:g}", by_threshold[t]))
        for max_drop in max_drops:
            point = cost_at_drop(pair.sweep.rows, "AP", pair.sweep.base["AP"], pair.sweep.base_gflops, max_drop)
            label = f"AP drop <= {max_drop * 100:g} pt"
            if point.cost is None:
                rows.append([pair.name, label, *[None] * (len(COLUMNS) - 2)])
            else:
                rows.append(cascade_row(label, by_threshold[point.threshold]))
    unit = convention.unit
    note = (
        f"{unit}/img: {convention_note(convention.name, convention.size)}. "
        f"{unit} vs base: the cascade's {unit} over its base's alone. "
        "AP drop rows: the cheapest threshold whose AP is within that many points of the base."
    )
    notes = [note for pair in pairs for note in pair.notes]
    if notes:
        note = f"{note} NOTE: {'; '.join(notes)}."
    columns = tuple(column.replace("GFLOPs", unit) for column in COLUMNS)
    return Table(columns, [tuple(r) for r in rows], note)
